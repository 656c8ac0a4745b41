//! Base64 (RFC 4648, standard alphabet): decoding for `varbinary` values,
//! which Trino's JSON carries as base64 text (padding optional), and
//! encoding for HTTP Basic credentials.

use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{alphabet, Engine as _};

/// The standard alphabet, padding optional when decoding.
const STANDARD_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Encodes `bytes` with padding.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes `text`, padded or not; `None` when it is not base64.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    STANDARD_ANY_PADDING.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn encodes_with_padding() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"alice:s3cret"), "YWxpY2U6czNjcmV0");
        assert_eq!(encode(&[0xde, 0xad, 0xbe, 0xef]), "3q2+7w==");
    }

    #[test]
    fn decodes_with_and_without_padding() {
        assert_eq!(decode("").as_deref(), Some(&b""[..]));
        assert_eq!(decode("Zg==").as_deref(), Some(&b"f"[..]));
        assert_eq!(decode("Zm8=").as_deref(), Some(&b"fo"[..]));
        assert_eq!(decode("Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(decode("Zm9vYg").as_deref(), Some(&b"foob"[..]));
        assert_eq!(
            decode("3q2+7w==").as_deref(),
            Some(&[0xde, 0xad, 0xbe, 0xef][..])
        );
    }

    #[test]
    fn rejects_what_is_not_base64() {
        assert_eq!(decode("Zm9v!"), None);
        assert_eq!(decode("Z"), None);
        assert_eq!(decode("Zg==="), None);
    }
}
