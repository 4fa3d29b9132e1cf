//! Syncline's change event: the typed model every crate shares, its validation rules and
//! the Avro single-object codec used on the wire (see `schemas/` and `docs/`).
//!
//! The model is the contract in `docs/event-contract.md`: an event says that one entity of one
//! type reached one version at the source, either with a full document (`Upsert`) or gone
//! (`Delete`). Sinks order events by [`ChangeEvent::version`] only.

mod binary;
pub mod canonical;
pub mod codec;
pub mod model;
pub mod validate;
pub mod view;

pub use canonical::spec_fingerprint;
pub use codec::{
    decode, decode_view, encode, DecodeError, Decoded, EncodeError, RegistryError, SchemaRegistry,
};
pub use model::{ChangeEvent, Op};
pub use validate::{Limits, ValidationError};
pub use view::{EventRef, Pairs, Strings};
