//! `geo_bounding_box` and `geo_distance` on `geo_point` fields (constant score).

use serde_json::{Map, Value};

use super::{boost_of, resolve_field, shard_error, Compiled, Ctx, FieldRef, Kind, Query};
use crate::error::{EsError, EsResult};
use crate::geo::{self, BoundingBox, Point};

/// The area a geo query accepts points in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Area {
    /// `geo_bounding_box`.
    Box(BoundingBox),
    /// `geo_distance`: a center and a radius in meters.
    Circle(Point, f64),
}

impl Area {
    /// Whether the area holds the point.
    pub fn contains(&self, p: Point) -> bool {
        match self {
            Area::Box(b) => b.contains(p),
            Area::Circle(c, r) => geo::distance(*c, p) <= *r,
        }
    }
}

const COMMON: &[&str] = &[
    "boost",
    "_name",
    "ignore_unmapped",
    "validation_method",
    "type",
];

fn ignore_unmapped(m: &Map<String, Value>) -> bool {
    m.get("ignore_unmapped")
        .is_some_and(|v| v == &Value::Bool(true) || v == "true")
}

/// Parses `{"geo_bounding_box": {"<field>": {...box...}, "boost": ..}}`.
pub(super) fn parse_bounding_box(body: &Value) -> EsResult<Query> {
    let m = body
        .as_object()
        .ok_or_else(|| EsError::parsing("[geo_bounding_box] query malformed"))?;
    let mut found = None;
    for (k, v) in m {
        if COMMON.contains(&k.as_str()) {
            continue;
        }
        if found.is_some() {
            return Err(EsError::parsing(format!(
                "[geo_bounding_box] query doesn't support multiple fields, found [{k}]"
            )));
        }
        let b = v.as_object().ok_or_else(|| {
            EsError::parsing(format!("[geo_bounding_box] query does not support [{k}]"))
        })?;
        found = Some((k.clone(), geo::parse_box(b)?));
    }
    let (field, bbox) =
        found.ok_or_else(|| EsError::parsing("[geo_bounding_box] requires a field"))?;
    Ok(Query::Geo {
        field,
        area: Area::Box(bbox),
        ignore_unmapped: ignore_unmapped(m),
        boost: boost_of(m)?,
    })
}

/// Parses `{"geo_distance": {"distance": "12km", "<field>": <point>}}`.
pub(super) fn parse_distance(body: &Value) -> EsResult<Query> {
    let m = body
        .as_object()
        .ok_or_else(|| EsError::parsing("[geo_distance] query malformed"))?;
    let mut meters = None;
    let mut found = None;
    for (k, v) in m {
        match k.as_str() {
            "distance" => meters = Some(geo::parse_distance(v)?),
            "distance_type" | "unit" | "optimize_bbox" => {}
            other if COMMON.contains(&other) => {}
            _ => {
                let p = geo::parse_point(v).ok_or_else(|| {
                    EsError::parsing(format!("[geo_distance] failed to parse the point of [{k}]"))
                })?;
                found = Some((k.clone(), p));
            }
        }
    }
    let meters = meters.ok_or_else(|| {
        EsError::illegal_argument("geo_distance requires 'distance' to be specified")
    })?;
    let (field, center) =
        found.ok_or_else(|| EsError::parsing("[geo_distance] requires a field"))?;
    Ok(Query::Geo {
        field,
        area: Area::Circle(center, meters),
        ignore_unmapped: ignore_unmapped(m),
        boost: boost_of(m)?,
    })
}

/// Compiles a geo query: the field must be a `geo_point`.
pub(super) fn compile_geo(
    ctx: &Ctx<'_>,
    field: &str,
    area: Area,
    ignore_unmapped: bool,
    boost: f32,
) -> EsResult<Compiled> {
    match resolve_field(ctx.mapping, field) {
        FieldRef::Field { path, field: f } if f.kind == Kind::GeoPoint => {
            Ok(Compiled::Geo { path, area, boost })
        }
        FieldRef::Field { field: f, .. } => Err(shard_error(
            ctx.index,
            ctx.uuid,
            format!(
                "Field [{field}] is of unsupported type [{}]. [geo_point] query supports the following types [geo_point,geo_shape]",
                f.type_str()
            ),
            None,
        )),
        _ if ignore_unmapped => Ok(Compiled::None),
        _ => Err(shard_error(
            ctx.index,
            ctx.uuid,
            format!("failed to find geo field [{field}]"),
            None,
        )),
    }
}
