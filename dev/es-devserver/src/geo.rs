//! `geo_point` values and the two point queries: `geo_bounding_box` and `geo_distance`.
//!
//! A point is written as `{"lat": .., "lon": ..}`, `"lat,lon"`, a geohash, `"POINT (lon
//! lat)"`, GeoJSON `{"type": "Point", "coordinates": [lon, lat]}` or `[lon, lat]`; a field
//! holds one point or an array of them.

use serde_json::{Map, Value};

use crate::error::{EsError, EsResult};

/// Elasticsearch's mean earth radius, in meters.
const EARTH_RADIUS: f64 = 6_371_008.771_4;

/// A point (degrees).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn checked(lat: f64, lon: f64) -> Option<Point> {
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some(Point { lat, lon })
}

const GEOHASH: &[u8] = b"0123456789bcdefghjkmnpqrstuvwxyz";

fn geohash(s: &str) -> Option<Point> {
    if s.is_empty() || s.len() > 12 {
        return None;
    }
    let (mut lat, mut lon) = ((-90.0f64, 90.0f64), (-180.0f64, 180.0f64));
    let mut even = true;
    for c in s.bytes() {
        let v = GEOHASH.iter().position(|g| *g == c.to_ascii_lowercase())?;
        for bit in (0..5).rev() {
            let on = (v >> bit) & 1 == 1;
            let r = if even { &mut lon } else { &mut lat };
            let mid = (r.0 + r.1) / 2.0;
            if on {
                r.0 = mid;
            } else {
                r.1 = mid;
            }
            even = !even;
        }
    }
    checked((lat.0 + lat.1) / 2.0, (lon.0 + lon.1) / 2.0)
}

fn from_text(s: &str) -> Option<Point> {
    let t = s.trim();
    let upper = t.to_ascii_uppercase();
    if let Some(rest) = upper.strip_prefix("POINT") {
        let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
        let mut it = inner.split_whitespace().map(|x| x.parse::<f64>().ok());
        let lon = it.next()??;
        let lat = it.next()??;
        return checked(lat, lon);
    }
    if let Some((a, b)) = t.split_once(',') {
        let lat = a.trim().parse().ok()?;
        let lon = b.split(',').next()?.trim().parse().ok()?;
        return checked(lat, lon);
    }
    geohash(t)
}

fn from_object(m: &Map<String, Value>) -> Option<Point> {
    if let Some(c) = m.get("coordinates") {
        return from_array(c.as_array()?);
    }
    checked(num(m.get("lat")?)?, num(m.get("lon")?)?)
}

fn from_array(a: &[Value]) -> Option<Point> {
    match a {
        [lon, lat] | [lon, lat, _] => checked(num(lat)?, num(lon)?),
        _ => None,
    }
}

/// One point in any of its forms.
pub fn parse_point(v: &Value) -> Option<Point> {
    match v {
        Value::String(s) => from_text(s),
        Value::Object(m) => from_object(m),
        Value::Array(a) if a.iter().all(Value::is_number) => from_array(a),
        _ => None,
    }
}

/// The points of a document's `geo_point` field at a dotted path.
pub fn points_at(doc: &Value, path: &str) -> Vec<Point> {
    fn leaf(v: &Value, out: &mut Vec<Point>) {
        match v {
            Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_number) => {
                out.extend(from_array(a));
            }
            Value::Array(a) => a.iter().for_each(|x| leaf(x, out)),
            other => out.extend(parse_point(other)),
        }
    }
    fn rec(v: &Value, parts: &[&str], out: &mut Vec<Point>, depth: usize) {
        if depth > 100 {
            return;
        }
        if parts.is_empty() {
            leaf(v, out);
            return;
        }
        match v {
            Value::Array(items) => items.iter().for_each(|x| rec(x, parts, out, depth + 1)),
            Value::Object(m) => {
                for i in 1..=parts.len() {
                    let key = parts.get(..i).unwrap_or_default().join(".");
                    if let Some(child) = m.get(&key) {
                        rec(child, parts.get(i..).unwrap_or_default(), out, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
    let parts: Vec<&str> = path.split('.').collect();
    let mut out = Vec::new();
    rec(doc, &parts, &mut out, 0);
    out
}

/// Great-circle distance in meters (haversine).
pub fn distance(a: Point, b: Point) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS * h.sqrt().min(1.0).asin()
}

/// A distance (`12km`, `5mi`, `300`) in meters.
pub fn parse_distance(v: &Value) -> EsResult<f64> {
    let text = match v {
        Value::Number(n) => return n.as_f64().ok_or_else(|| EsError::parsing("bad distance")),
        Value::String(s) => s.trim().to_string(),
        _ => return Err(EsError::parsing("[geo_distance] requires a [distance]")),
    };
    const UNITS: &[(&str, f64)] = &[
        ("nmi", 1852.0),
        ("NM", 1852.0),
        ("km", 1000.0),
        ("kilometers", 1000.0),
        ("mm", 0.001),
        ("millimeters", 0.001),
        ("cm", 0.01),
        ("centimeters", 0.01),
        ("mi", 1609.344),
        ("miles", 1609.344),
        ("yd", 0.9144),
        ("yards", 0.9144),
        ("ft", 0.3048),
        ("feet", 0.3048),
        ("in", 0.0254),
        ("inch", 0.0254),
        ("m", 1.0),
        ("meters", 1.0),
    ];
    let mut units: Vec<&(&str, f64)> = UNITS.iter().collect();
    units.sort_by_key(|(u, _)| std::cmp::Reverse(u.len()));
    for (unit, factor) in units {
        if let Some(n) = text.strip_suffix(unit) {
            if let Ok(x) = n.trim().parse::<f64>() {
                return Ok(x * factor);
            }
        }
    }
    text.parse::<f64>()
        .map_err(|_| EsError::parse(format!("failed to parse distance [{text}]")))
}

/// A bounding box (`top` >= `bottom`; `left` > `right` crosses the date line).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    /// Northern edge.
    pub top: f64,
    /// Western edge.
    pub left: f64,
    /// Southern edge.
    pub bottom: f64,
    /// Eastern edge.
    pub right: f64,
}

impl BoundingBox {
    /// Whether the box holds the point.
    pub fn contains(&self, p: Point) -> bool {
        if p.lat < self.bottom || p.lat > self.top {
            return false;
        }
        if self.left <= self.right {
            self.left <= p.lon && p.lon <= self.right
        } else {
            p.lon >= self.left || p.lon <= self.right
        }
    }
}

fn corner(v: &Value, name: &str) -> EsResult<Point> {
    parse_point(v)
        .ok_or_else(|| EsError::parsing(format!("[geo_bounding_box] failed to parse [{name}]")))
}

/// Parses the box of a `geo_bounding_box` field entry (`top_left`/`bottom_right`,
/// `top_right`/`bottom_left`, `top`/`left`/`bottom`/`right`, or `wkt: BBOX(..)`).
pub fn parse_box(m: &Map<String, Value>) -> EsResult<BoundingBox> {
    let mut b = BoundingBox {
        top: f64::NAN,
        left: f64::NAN,
        bottom: f64::NAN,
        right: f64::NAN,
    };
    for (k, v) in m {
        match k.as_str() {
            "top_left" => {
                let p = corner(v, k)?;
                (b.top, b.left) = (p.lat, p.lon);
            }
            "bottom_right" => {
                let p = corner(v, k)?;
                (b.bottom, b.right) = (p.lat, p.lon);
            }
            "top_right" => {
                let p = corner(v, k)?;
                (b.top, b.right) = (p.lat, p.lon);
            }
            "bottom_left" => {
                let p = corner(v, k)?;
                (b.bottom, b.left) = (p.lat, p.lon);
            }
            "top" => b.top = num(v).unwrap_or(f64::NAN),
            "bottom" => b.bottom = num(v).unwrap_or(f64::NAN),
            "left" => b.left = num(v).unwrap_or(f64::NAN),
            "right" => b.right = num(v).unwrap_or(f64::NAN),
            "wkt" => {
                let t = v.as_str().unwrap_or_default().trim().to_ascii_uppercase();
                let inner = t
                    .strip_prefix("BBOX")
                    .and_then(|r| r.trim().strip_prefix('('))
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| EsError::parsing("[geo_bounding_box] failed to parse [wkt]"))?;
                let n: Vec<f64> = inner
                    .split(',')
                    .filter_map(|x| x.trim().parse().ok())
                    .collect();
                let [min_lon, max_lon, max_lat, min_lat] = n.as_slice() else {
                    return Err(EsError::parsing("[geo_bounding_box] failed to parse [wkt]"));
                };
                b = BoundingBox {
                    top: *max_lat,
                    left: *min_lon,
                    bottom: *min_lat,
                    right: *max_lon,
                };
            }
            other => {
                return Err(EsError::parsing(format!(
                    "failed to parse [geo_bounding_box] query. unexpected field [{other}]"
                )))
            }
        }
    }
    if [b.top, b.left, b.bottom, b.right]
        .iter()
        .any(|x| x.is_nan())
    {
        return Err(EsError::parsing(
            "failed to parse [geo_bounding_box] query. could not parse bounding box",
        ));
    }
    if b.top < b.bottom {
        return Err(EsError::illegal_argument(format!(
            "top is below bottom corner: {} vs. {}",
            b.top, b.bottom
        )));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn point_forms() {
        let want = Some(Point {
            lat: 41.12,
            lon: -71.34,
        });
        for v in [
            json!({"lat": 41.12, "lon": -71.34}),
            json!("41.12,-71.34"),
            json!("POINT (-71.34 41.12)"),
            json!([-71.34, 41.12]),
            json!({"type": "Point", "coordinates": [-71.34, 41.12]}),
        ] {
            assert_eq!(parse_point(&v), want, "{v}");
        }
        let g = parse_point(&json!("drm3btev3e86")).unwrap_or(Point { lat: 0.0, lon: 0.0 });
        assert!((g.lat - 41.12).abs() < 0.001 && (g.lon + 71.34).abs() < 0.001);
        assert_eq!(parse_point(&json!("100,0")), None);
        let doc = json!({"a": [[-71.34, 41.12], "1,2"], "b": {"c": [1.0, 2.0]}});
        assert_eq!(points_at(&doc, "a").len(), 2);
        assert_eq!(points_at(&doc, "b.c"), vec![Point { lat: 2.0, lon: 1.0 }]);
    }

    #[test]
    fn distances_and_boxes() {
        let a = Point {
            lat: 40.7128,
            lon: -74.0060,
        };
        let b = Point {
            lat: 34.0522,
            lon: -118.2437,
        };
        let d = distance(a, b);
        assert!((d - 3_935_746.0).abs() < 5_000.0, "{d}");
        assert_eq!(parse_distance(&json!("12km")).ok(), Some(12_000.0));
        assert_eq!(parse_distance(&json!("1mi")).ok(), Some(1609.344));
        assert_eq!(parse_distance(&json!(5)).ok(), Some(5.0));
        assert!(parse_distance(&json!("far")).is_err());
        let bx = parse_box(
            json!({"top_left": {"lat": 42, "lon": -72}, "bottom_right": [-70, 40]})
                .as_object()
                .unwrap_or(&Map::new()),
        )
        .ok();
        let Some(bx) = bx else { panic!("box") };
        assert!(bx.contains(Point {
            lat: 41.0,
            lon: -71.0
        }));
        assert!(!bx.contains(Point {
            lat: 43.0,
            lon: -71.0
        }));
        let wrap = BoundingBox {
            top: 10.0,
            left: 170.0,
            bottom: -10.0,
            right: -170.0,
        };
        assert!(wrap.contains(Point {
            lat: 0.0,
            lon: 179.0
        }));
        assert!(!wrap.contains(Point { lat: 0.0, lon: 0.0 }));
    }
}
