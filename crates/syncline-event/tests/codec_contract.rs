//! The codec's contract: every field combination round-trips, records written with an
//! older schema decode under the current reader, and every kind of bad input is a typed
//! error, never a panic.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use apache_avro::types::Value;
use apache_avro::Schema;
use proptest::prelude::*;
use syncline_event::codec::{CURRENT_SCHEMA_JSON, MAGIC};
use syncline_event::{
    decode, encode, ChangeEvent, DecodeError, Decoded, Limits, Op, SchemaRegistry, ValidationError,
};

fn event(op: Op, doc: Option<&str>) -> ChangeEvent {
    ChangeEvent::new("product", "p-1", op, 7, "catalog", doc.map(str::to_owned))
}

#[test]
fn every_field_combination_round_trips() {
    let docs = [
        None,
        Some(r#"{"a":1}"#),
        Some(r#"{"nested":{"x":[1,2,{"y":"é"}]}}"#),
    ];
    let tag_sets: [&[&str]; 3] = [&[], &["search:lamps"], &["a", "b", "c"]];
    let attr_sets: [&[(&str, &str)]; 2] = [&[], &[("tenant", "t1"), ("trace", "")]];
    let mut n = 0;
    for op in [Op::Upsert, Op::Delete] {
        for doc in docs {
            if (op == Op::Upsert) != doc.is_some() {
                continue;
            }
            for tags in tag_sets {
                for attrs in attr_sets {
                    for (version, id) in [(0, "x"), (i64::MAX, "ü/ id with spaces")] {
                        let mut e = event(op, doc);
                        e.version = version;
                        e.entity_id = id.to_owned();
                        e.occurred_at = -5;
                        e.invalidate = tags.iter().map(|s| s.to_string()).collect();
                        e.attributes = attrs
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect::<BTreeMap<_, _>>();
                        let bytes = encode(&e, &Limits::default()).unwrap();
                        assert_eq!(decode(&bytes, &Limits::default()).unwrap(), e);
                        n += 1;
                    }
                }
            }
        }
    }
    // Upsert with two documents, delete without one; each with every tag and attribute set.
    assert_eq!(n, 3 * 3 * 2 * 2);
}

/// The released v1 schema without its last two fields stands in for "an older writer":
/// the mechanism under test is resolution by fingerprint plus Avro's reader defaults,
/// which is what every future release relies on.
fn older_writer_schema() -> String {
    let mut schema: serde_json::Value = serde_json::from_str(CURRENT_SCHEMA_JSON).unwrap();
    let fields = schema["fields"].as_array_mut().unwrap();
    fields.retain(|f| f["name"] != "invalidate" && f["name"] != "attributes");
    schema.to_string()
}

#[test]
fn a_record_written_with_an_older_schema_decodes_under_the_current_reader() {
    let older = older_writer_schema();
    let old_writer = SchemaRegistry::new(&older, &[]).unwrap();
    let reader = SchemaRegistry::new(CURRENT_SCHEMA_JSON, &[&older]).unwrap();
    assert_ne!(old_writer.reader_fingerprint(), reader.reader_fingerprint());

    // Encode with the older schema by hand: its body simply has no invalidate/attributes.
    let e = event(Op::Upsert, Some(r#"{"name":"lamp"}"#));
    let schema = apache_avro::Schema::parse_str(&older).unwrap();
    let body = apache_avro::to_avro_datum(
        &schema,
        Value::Record(vec![
            ("event_id".into(), Value::String(e.event_id.clone())),
            ("entity_type".into(), Value::String(e.entity_type.clone())),
            ("entity_id".into(), Value::String(e.entity_id.clone())),
            ("op".into(), Value::Enum(0, "UPSERT".into())),
            ("version".into(), Value::Long(e.version)),
            ("occurred_at".into(), Value::TimestampMicros(e.occurred_at)),
            ("source".into(), Value::String(e.source.clone())),
            (
                "document".into(),
                Value::Union(1, Box::new(Value::String(e.document.clone().unwrap()))),
            ),
        ]),
    )
    .unwrap();
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&old_writer.reader_fingerprint().to_le_bytes());
    bytes.extend_from_slice(&body);

    let back = reader.decode(&bytes, &Limits::default()).unwrap();
    assert_eq!(
        back, e,
        "defaults fill the fields the old writer did not have"
    );

    // A reader that does not know the older schema says so, naming the fingerprint.
    let err = SchemaRegistry::builtin()
        .decode(&bytes, &Limits::default())
        .unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnknownFingerprint(old_writer.reader_fingerprint())
    );
    assert_eq!(err.class(), "unknown_schema");
    assert!(err
        .to_string()
        .contains(&format!("{:#018x}", old_writer.reader_fingerprint())));
}

#[test]
fn every_bad_input_is_a_specific_error() {
    let limits = Limits::default();
    let good = encode(&event(Op::Upsert, Some(r#"{"a":1}"#)), &limits).unwrap();

    assert_eq!(decode(&[], &limits), Err(DecodeError::TooShort(0)));
    assert_eq!(
        decode(&[0xC3, 0x01, 1], &limits),
        Err(DecodeError::TooShort(3))
    );
    let mut bad_magic = good.clone();
    bad_magic[0] = b'{';
    assert_eq!(
        decode(&bad_magic, &limits),
        Err(DecodeError::BadMagic(b'{', 0x01))
    );
    let mut unknown = good.clone();
    unknown[2..10].copy_from_slice(&0xdead_beef_u64.to_le_bytes());
    assert_eq!(
        decode(&unknown, &limits),
        Err(DecodeError::UnknownFingerprint(0xdead_beef))
    );
    let truncated = &good[..good.len() - 3];
    assert!(matches!(
        decode(truncated, &limits),
        Err(DecodeError::Malformed(_))
    ));
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"xyz");
    assert_eq!(
        decode(&trailing, &limits),
        Err(DecodeError::TrailingBytes(3))
    );

    // Contract violations: the encoder refuses them, and each maps to the error class
    // that a decoder reports (and the dead-letter headers carry) for a foreign record.
    let cases: Vec<(ChangeEvent, &str)> = vec![
        (
            ChangeEvent::new("Bad Type", "x", Op::Delete, 1, "s", None),
            "invalid_event",
        ),
        (
            ChangeEvent::new("t", "", Op::Delete, 1, "s", None),
            "invalid_event",
        ),
        (
            ChangeEvent::new("t", "x".repeat(513), Op::Delete, 1, "s", None),
            "invalid_event",
        ),
        (
            ChangeEvent::new("t", "x", Op::Delete, -1, "s", None),
            "invalid_event",
        ),
        (
            ChangeEvent::new("t", "x", Op::Upsert, 1, "s", Some("[1,2]".into())),
            "invalid_document",
        ),
        (
            ChangeEvent::new("t", "x", Op::Upsert, 1, "s", Some("{not json".into())),
            "invalid_document",
        ),
    ];
    for (e, class) in cases {
        let err = e.validate(&limits).unwrap_err();
        assert!(matches!(
            encode(&e, &limits),
            Err(syncline_event::EncodeError::Invalid(_))
        ));
        assert_eq!(DecodeError::from(err).class(), class, "{e:?}");
    }

    // JSON that is not an object and text that is not JSON are told apart by variant,
    // not by comparing reasons (a table snapshot names them differently to the operator).
    let doc_error = |doc: &str| {
        ChangeEvent::new("t", "x", Op::Upsert, 1, "s", Some(doc.into()))
            .validate(&limits)
            .unwrap_err()
    };
    assert_eq!(doc_error(" [1,2]"), ValidationError::DocumentNotObject);
    assert_eq!(doc_error("\"text\""), ValidationError::DocumentNotObject);
    assert!(matches!(
        doc_error("{not json"),
        ValidationError::DocumentNotJson(reason) if !reason.is_empty()
    ));

    // Size limit: the same record decodes under a larger limit and fails under a smaller.
    let big_doc = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2000));
    let big = encode(&event(Op::Upsert, Some(&big_doc)), &limits).unwrap();
    let small = Limits {
        max_document_bytes: 1000,
    };
    let err = decode(&big, &small).unwrap_err();
    assert_eq!(
        err,
        DecodeError::Invalid(ValidationError::DocumentTooLarge {
            size: big_doc.len(),
            limit: 1000
        })
    );
    assert_eq!(err.class(), "document_too_large");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, .. ProptestConfig::default() })]

    /// Arbitrary bytes, with or without a valid header, never panic the decoder.
    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), with_header in any::<bool>()) {
        let mut bytes = Vec::new();
        if with_header {
            bytes.extend_from_slice(&MAGIC);
            bytes.extend_from_slice(&SchemaRegistry::builtin().reader_fingerprint().to_le_bytes());
        }
        bytes.extend_from_slice(&body);
        let _ = decode(&bytes, &Limits::default());
    }

    /// Valid records with bytes flipped, cut or inserted never panic the decoder, and a
    /// record that still decodes is a valid event.
    #[test]
    fn mutated_records_never_panic(
        seed_doc in "[a-z]{0,40}",
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        insert in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let doc = format!(r#"{{"v":"{seed_doc}"}}"#);
        let mut bytes = encode(&event(Op::Upsert, Some(&doc)), &Limits::default()).unwrap();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= b;
        }
        let at = cut.index(bytes.len());
        bytes.splice(at..at, insert);
        if let Ok(e) = decode(&bytes, &Limits::default()) {
            prop_assert!(e.validate(&Limits::default()).is_ok());
        }
    }
}

/// An Avro `long` as apache-avro writes it (an encoder that shares no code with ours).
fn put_long(out: &mut Vec<u8>, v: i64) {
    out.extend(apache_avro::to_avro_datum(&Schema::Long, Value::Long(v)).unwrap());
}

/// An Avro `string` as apache-avro writes it.
fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend(apache_avro::to_avro_datum(&Schema::String, Value::String(s.into())).unwrap());
}

/// Arrays and maps may be written in several blocks, and a block may carry a negative count
/// followed by its size in bytes (Java's blocking encoder does): the borrowed view reads
/// them as apache-avro's resolving reader does.
#[test]
fn arrays_and_maps_in_several_blocks_read_alike() {
    let mut body = Vec::new();
    for s in ["evt-1", "product", "42"] {
        put_str(&mut body, s);
    }
    put_long(&mut body, 0); // UPSERT
    put_long(&mut body, 7); // version
    put_long(&mut body, 1_700_000_000_000_000); // occurred_at
    put_str(&mut body, "svc");
    put_long(&mut body, 1); // document: the string branch
    put_str(&mut body, "{\"a\":1}");
    // invalidate: a block of two, then a block of one with a negative count and its size.
    put_long(&mut body, 2);
    put_str(&mut body, "tag-a");
    put_str(&mut body, "tag-b");
    let mut block = Vec::new();
    put_str(&mut block, "tag-c");
    put_long(&mut body, -1);
    put_long(&mut body, block.len() as i64);
    body.extend_from_slice(&block);
    put_long(&mut body, 0);
    // attributes: two blocks of one entry; the second repeats a key (the last one wins).
    for (k, v) in [("k", "first"), ("k", "second")] {
        put_long(&mut body, 1);
        put_str(&mut body, k);
        put_str(&mut body, v);
    }
    put_long(&mut body, 0);

    let reg = SchemaRegistry::builtin();
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&reg.reader_fingerprint().to_le_bytes());
    bytes.extend_from_slice(&body);

    let limits = Limits::default();
    let decoded = reg.decode_view(&bytes, &limits).unwrap();
    let Decoded::Borrowed(view) = decoded else {
        panic!("a current-schema record is borrowed: {decoded:?}");
    };
    assert_eq!(view.invalidate.len(), 3);
    assert_eq!(
        view.invalidate.iter().collect::<Vec<_>>(),
        ["tag-a", "tag-b", "tag-c"]
    );
    assert_eq!(view.attributes.len(), 2, "entries as written");
    let owned = view.to_owned_event();
    assert_eq!(
        owned.attributes,
        BTreeMap::from([("k".into(), "second".into())])
    );
    assert_eq!(owned, reg.decode_resolving(&bytes, &limits).unwrap());
}

fn arb_event() -> impl Strategy<Value = ChangeEvent> {
    (
        "[a-z0-9][a-z0-9_-]{0,10}",
        "\\PC{1,20}",
        any::<bool>(),
        0i64..=i64::MAX,
        any::<i64>(),
        "\\PC{0,30}",
        proptest::collection::vec("\\PC{0,8}", 0..4),
        proptest::collection::btree_map("\\PC{0,6}", "\\PC{0,6}", 0..3),
    )
        .prop_map(|(t, id, upsert, version, at, text, tags, attrs)| {
            let (op, doc) = if upsert {
                (
                    Op::Upsert,
                    Some(serde_json::json!({ "text": text }).to_string()),
                )
            } else {
                (Op::Delete, None)
            };
            let mut e = ChangeEvent::new(t, id, op, version, "prop", doc);
            e.occurred_at = at;
            e.invalidate = tags;
            e.attributes = attrs;
            e
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, .. ProptestConfig::default() })]

    /// The direct writer produces apache-avro's bytes (map entry order aside: apache-avro
    /// keeps maps in a HashMap, so with two or more attributes only decoding is compared).
    #[test]
    fn direct_writer_agrees_with_apache_avro(e in arb_event()) {
        let reg = SchemaRegistry::builtin();
        let direct = reg.encode(&e, &Limits::default()).unwrap();
        let generic = reg.encode_generic(&e).unwrap();
        if e.attributes.len() <= 1 {
            prop_assert_eq!(&direct, &generic);
        }
        prop_assert_eq!(reg.decode_resolving(&direct, &Limits::default()).unwrap(), e.clone());
        prop_assert_eq!(reg.decode(&generic, &Limits::default()).unwrap(), e);
    }

    /// A current-schema record decodes to a view borrowed from its bytes that equals the
    /// event, field by field (tags and attributes read from the encoded blocks).
    #[test]
    fn the_borrowed_view_equals_the_event(e in arb_event()) {
        let reg = SchemaRegistry::builtin();
        let bytes = reg.encode(&e, &Limits::default()).unwrap();
        let decoded = reg.decode_view(&bytes, &Limits::default()).unwrap();
        prop_assert!(matches!(decoded, Decoded::Borrowed(_)), "{:?}", decoded);
        let view = decoded.view();
        prop_assert_eq!(view, e.view());
        let tags: Vec<&str> = e.invalidate.iter().map(String::as_str).collect();
        prop_assert_eq!(view.invalidate.iter().collect::<Vec<_>>(), tags);
        prop_assert_eq!(view.attributes.len(), e.attributes.len());
        prop_assert_eq!(view.to_owned_event(), e);
    }

    /// On valid and on damaged records, the direct reader accepts exactly what
    /// apache-avro's resolving reader accepts, with the same result.
    #[test]
    fn direct_reader_agrees_with_apache_avro(
        e in arb_event(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let reg = SchemaRegistry::builtin();
        let mut bytes = reg.encode(&e, &Limits::default()).unwrap();
        for (i, b) in flips {
            // Keep the header: a different fingerprint would leave the direct path.
            let i = 10 + i.index(bytes.len() - 10);
            bytes[i] ^= b;
        }
        if let Some(c) = cut {
            bytes.truncate(10 + c.index(bytes.len() - 10));
        }
        let direct = reg.decode(&bytes, &Limits::default());
        let resolving = reg.decode_resolving(&bytes, &Limits::default());
        match (&direct, &resolving) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "direct {:?} vs resolving {:?}", direct, resolving),
        }
    }
}
