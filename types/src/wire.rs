//! serde `with` helpers for 128-bit ids in formats without a u128 (such as
//! MessagePack): a `u128` as 16 big-endian bytes. The same module is
//! `batpak::wire`.
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Ref {
//!     #[serde(with = "batpak_types::wire::u128_bytes")]
//!     id: u128,
//!     #[serde(with = "batpak_types::wire::option_u128_bytes")]
//!     parent: Option<u128>,
//! }
//! ```

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

struct U128Visitor;

impl<'de> Visitor<'de> for U128Visitor {
    type Value = u128;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "16 bytes (big-endian u128)")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<u128, E> {
        let arr: [u8; 16] = v.try_into().map_err(|_| E::invalid_length(v.len(), &self))?;
        Ok(u128::from_be_bytes(arr))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u128, A::Error> {
        let mut arr = [0u8; 16];
        for (i, slot) in arr.iter_mut().enumerate() {
            *slot = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(i, &self))?;
        }
        if seq.next_element::<u8>()?.is_some() {
            return Err(de::Error::invalid_length(17, &self));
        }
        Ok(u128::from_be_bytes(arr))
    }
}

/// A `u128` as 16 big-endian bytes (accepts bytes or a sequence of 16 u8).
pub mod u128_bytes {
    use super::*;

    /// Serialises `v` as 16 big-endian bytes.
    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&v.to_be_bytes())
    }

    /// Reads 16 bytes (or a sequence of 16 u8) as a big-endian `u128`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        d.deserialize_bytes(U128Visitor)
    }
}

/// An `Option<u128>`: `None` as nil, `Some` as 16 big-endian bytes.
pub mod option_u128_bytes {
    use super::*;

    /// Serialises `None` as nil and `Some(v)` as 16 big-endian bytes.
    pub fn serialize<S: Serializer>(v: &Option<u128>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&serde_bytes16(*v)),
            None => s.serialize_none(),
        }
    }

    /// The inverse of [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u128>, D::Error> {
        struct OptVisitor;
        impl<'de> Visitor<'de> for OptVisitor {
            type Value = Option<u128>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "nil or 16 bytes")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_bytes(U128Visitor).map(Some)
            }
        }
        d.deserialize_option(OptVisitor)
    }
}

/// A `Vec<u128>` as a sequence of 16-element byte arrays.
pub mod vec_u128_bytes {
    use super::*;
    use serde::ser::SerializeSeq;

    /// Serialises each id as an array of 16 big-endian bytes.
    pub fn serialize<S: Serializer>(v: &[u128], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for id in v {
            seq.serialize_element(&id.to_be_bytes())?;
        }
        seq.end()
    }

    /// The inverse of [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u128>, D::Error> {
        let arrays: Vec<[u8; 16]> = serde::Deserialize::deserialize(d)?;
        Ok(arrays.into_iter().map(u128::from_be_bytes).collect())
    }
}

/// Wraps a u128 so `serialize_some` writes it as bytes.
fn serde_bytes16(v: u128) -> impl serde::Serialize {
    struct B([u8; 16]);
    impl serde::Serialize for B {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }
    B(v.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ids {
        #[serde(with = "super::u128_bytes")]
        id: u128,
        #[serde(with = "super::option_u128_bytes")]
        parent: Option<u128>,
        #[serde(with = "super::option_u128_bytes")]
        none: Option<u128>,
        #[serde(with = "super::vec_u128_bytes")]
        many: Vec<u128>,
    }

    #[test]
    fn ids_round_trip_as_big_endian_bytes() {
        let v = Ids { id: 0x0102, parent: Some(u128::MAX), none: None, many: vec![1, 2] };
        let json = serde_json::to_value(&v).expect("serialise");
        assert_eq!(json["id"][15], 2);
        assert_eq!(json["id"][14], 1);
        assert!(json["none"].is_null());
        let back: Ids = serde_json::from_value(json).expect("deserialise");
        assert_eq!(back, v);
        assert!(serde_json::from_str::<Ids>(r#"{"id":[1,2],"parent":null,"none":null,"many":[]}"#).is_err());
    }
}
