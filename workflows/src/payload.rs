//! [`Json`]: a payload decoded straight from its JSON bytes.
//!
//! The SDK's default converter decodes every payload into a `serde_json::Value` tree first and
//! then into the type. For the listing's hot payloads (a batch of reservations, its write and
//! the write's answer, each with hundreds of orders) that tree was a sixth of the worker's CPU
//! and sat on the single writer's path. The bytes are the same as `T`'s own, so recorded
//! histories and callers that send a plain `T` are unaffected.

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use temporalio_common::data_converters::{
    ErasedSerdePayloadConverter, PayloadConversionError, SerializationContext,
    TemporalDeserializable,
};
use temporalio_common::protos::temporal::api::common::v1::Payload;
use temporalio_common::protos::{ENCODING_PAYLOAD_KEY, JSON_ENCODING_VAL};

/// `T` as a payload, encoded as `T` is and decoded without an intermediate tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Json<T>(pub T);

impl<T: Serialize> Serialize for Json<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<T: DeserializeOwned> TemporalDeserializable for Json<T> {
    fn from_serde(
        _: &dyn ErasedSerdePayloadConverter,
        _: &SerializationContext<'_>,
        payload: Payload,
    ) -> Result<Self, PayloadConversionError> {
        decode(payload)
    }

    fn from_payload(
        _: &SerializationContext<'_>,
        payload: Payload,
    ) -> Result<Self, PayloadConversionError> {
        decode(payload)
    }
}

fn decode<T: DeserializeOwned>(payload: Payload) -> Result<Json<T>, PayloadConversionError> {
    let encoding = payload
        .metadata
        .get(ENCODING_PAYLOAD_KEY)
        .map(Vec::as_slice);
    let bytes: &[u8] = match encoding {
        Some(e) if e == JSON_ENCODING_VAL.as_bytes() => &payload.data,
        // How the SDK encodes a value whose JSON is `null` (its constant is private).
        Some(b"binary/null") => b"null",
        _ => return Err(PayloadConversionError::WrongEncoding),
    };
    serde_json::from_slice(bytes)
        .map(Json)
        .map_err(|e| PayloadConversionError::EncodingError(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn json_payload(data: &[u8]) -> Payload {
        Payload {
            metadata: HashMap::from([("encoding".to_string(), b"json/plain".to_vec())]),
            data: data.to_vec(),
            external_payloads: vec![],
        }
    }

    #[test]
    fn reads_what_the_default_converter_writes() {
        let v: Json<Vec<(String, u32)>> = decode(json_payload(br#"[["a",1],["b",2]]"#)).unwrap();
        assert_eq!(v.0, vec![("a".to_string(), 1), ("b".to_string(), 2)]);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"[["a",1],["b",2]]"#,
            "encoded as the wrapped value is"
        );
    }

    #[test]
    fn refuses_other_encodings_and_bad_json() {
        let mut p = json_payload(b"1");
        p.metadata
            .insert("encoding".into(), b"json/protobuf".to_vec());
        assert!(matches!(
            decode::<u32>(p),
            Err(PayloadConversionError::WrongEncoding)
        ));
        assert!(matches!(
            decode::<u32>(json_payload(b"\"x\"")),
            Err(PayloadConversionError::EncodingError(_))
        ));
        let null = Payload {
            metadata: HashMap::from([("encoding".to_string(), b"binary/null".to_vec())]),
            ..Default::default()
        };
        assert_eq!(decode::<Option<u32>>(null).unwrap().0, None);
    }
}
