//! The only JWT cryptography the service uses: HMAC-SHA256.
//!
//! `jsonwebtoken`'s bundled backends (`rust_crypto`, `aws_lc_rs`) carry every algorithm,
//! RSA among them (the `rsa` crate has an open timing advisory, RUSTSEC-2023-0071), and
//! their keys' parsers. This provider implements exactly what [`super::TokenService`]
//! signs and verifies; any other algorithm is refused as `InvalidAlgorithm` (the
//! validation pins HS256 before a signature is ever checked, so this is a second wall).

use std::sync::Once;

use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::{Digest, Sha256, Sha384, Sha512};
use signature::{Signer, Verifier};

type HmacSha256 = Hmac<Sha256>;

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    jwk_utils: JwkUtils {
        extract_rsa_public_key_components: no_rsa_keys,
        extract_ec_public_key_coordinates: no_ec_keys,
        compute_digest,
    },
};

/// Installs the provider for this process. Called before any token is signed or
/// verified (by [`super::TokenService::new`]); idempotent.
pub(super) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Refused only when a provider was installed before: a test binary that
        // installed this same provider, since the crate has no backend of its own.
        let _ = PROVIDER.install_default();
    });
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    match algorithm {
        Algorithm::HS256 => Ok(Box::new(Hs256(hmac_key(key.try_get_hmac_secret()?)?))),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    match algorithm {
        Algorithm::HS256 => Ok(Box::new(Hs256(hmac_key(key.try_get_hmac_secret()?)?))),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn hmac_key(secret: &[u8]) -> Result<HmacSha256, Error> {
    HmacSha256::new_from_slice(secret).map_err(|_| ErrorKind::InvalidKeyFormat.into())
}

/// HS256 with a keyed MAC state, cloned per message.
struct Hs256(HmacSha256);

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, message: &[u8], tag: &Vec<u8>) -> Result<(), signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        // Constant-time comparison.
        mac.verify_slice(tag).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

fn no_rsa_keys(_: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn no_ec_keys(_: &[u8], _: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>), Error> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Vec<u8> {
    match hash {
        ThumbprintHash::SHA256 => Sha256::digest(data).to_vec(),
        ThumbprintHash::SHA384 => Sha384::digest(data).to_vec(),
        ThumbprintHash::SHA512 => Sha512::digest(data).to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    /// RFC 7515 Appendix A.1: the HS256 example's key, signing input and signature.
    const RFC7515_KEY: &str =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    const RFC7515_INPUT: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
    const RFC7515_SIGNATURE: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    #[test]
    fn hs256_matches_the_rfc_7515_example() {
        install();
        let key = URL_SAFE_NO_PAD.decode(RFC7515_KEY).unwrap();
        let signed = jsonwebtoken::crypto::sign(
            RFC7515_INPUT.as_bytes(),
            &EncodingKey::from_secret(&key),
            Algorithm::HS256,
        )
        .unwrap();
        assert_eq!(signed, RFC7515_SIGNATURE);
        let decoding = DecodingKey::from_secret(&key);
        let verify = |signature: &str, input: &str| {
            jsonwebtoken::crypto::verify(signature, input.as_bytes(), &decoding, Algorithm::HS256)
                .unwrap()
        };
        assert!(verify(RFC7515_SIGNATURE, RFC7515_INPUT));
        assert!(!verify(RFC7515_SIGNATURE, &format!("{RFC7515_INPUT}x")));
        assert!(!verify(
            "eBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            RFC7515_INPUT
        ));
    }

    #[test]
    fn every_other_algorithm_is_refused_not_panicking() {
        install();
        let key = b"0123456789abcdef0123456789abcdef";
        for algorithm in [
            Algorithm::HS384,
            Algorithm::HS512,
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ] {
            let signed =
                jsonwebtoken::crypto::sign(b"a.b", &EncodingKey::from_secret(key), algorithm);
            assert_eq!(
                signed.unwrap_err().kind(),
                &ErrorKind::InvalidAlgorithm,
                "{algorithm:?}"
            );
            let verified = jsonwebtoken::crypto::verify(
                "c2ln",
                b"a.b",
                &DecodingKey::from_secret(key),
                algorithm,
            );
            assert_eq!(
                verified.unwrap_err().kind(),
                &ErrorKind::InvalidAlgorithm,
                "{algorithm:?}"
            );
        }
    }
}
