//! The only JWT cryptography the service uses: EdDSA (Ed25519), ES256 (ECDSA P-256,
//! SHA-256) and HMAC-SHA256.
//!
//! `jsonwebtoken`'s bundled backends (`rust_crypto`, `aws_lc_rs`) carry every algorithm,
//! RSA among them (the `rsa` crate has an open timing advisory, RUSTSEC-2023-0071), and
//! their keys' parsers. This provider implements exactly what [`super::TokenService`]
//! signs and verifies; any other algorithm is refused as `InvalidAlgorithm` (the
//! verification pins one algorithm per key before a signature is ever checked, so this
//! is a second wall). A key of the wrong family or length is refused, never a panic.
//!
//! Keys as `jsonwebtoken` carries them: signing, the PKCS#8 DER private key
//! ([`EncodingKey::from_ed_der`], [`EncodingKey::from_ec_der`]); verifying, the raw public
//! key ([`DecodingKey::from_ed_der`]: 32 bytes; [`DecodingKey::from_ec_der`]: the
//! uncompressed SEC1 point). Signatures are the JOSE forms: 64 bytes, `R || S` for ES256.

use std::sync::Once;

use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
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
        Algorithm::EdDSA if key.family() == AlgorithmFamily::Ed => {
            ed25519_dalek::pkcs8::DecodePrivateKey::from_pkcs8_der(key.inner())
                .map(|k| Box::new(EdDsaSigner(k)) as Box<dyn JwtSigner>)
                .map_err(|_| ErrorKind::InvalidEddsaKey.into())
        }
        Algorithm::ES256 if key.family() == AlgorithmFamily::Ec => {
            p256::pkcs8::DecodePrivateKey::from_pkcs8_der(key.inner())
                .map(|k: p256::SecretKey| Box::new(Es256Signer(k.into())) as Box<dyn JwtSigner>)
                .map_err(|_| ErrorKind::InvalidEcdsaKey.into())
        }
        Algorithm::EdDSA | Algorithm::ES256 => Err(ErrorKind::InvalidKeyFormat.into()),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    match algorithm {
        Algorithm::HS256 => Ok(Box::new(Hs256(hmac_key(key.try_get_hmac_secret()?)?))),
        Algorithm::EdDSA if key.family() == AlgorithmFamily::Ed => {
            let bytes: &[u8; 32] = raw_public(key)?
                .try_into()
                .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?;
            ed25519_dalek::VerifyingKey::from_bytes(bytes)
                .map(|k| Box::new(EdDsaVerifier(k)) as Box<dyn JwtVerifier>)
                .map_err(|_| ErrorKind::InvalidEddsaKey.into())
        }
        Algorithm::ES256 if key.family() == AlgorithmFamily::Ec => {
            p256::ecdsa::VerifyingKey::from_sec1_bytes(raw_public(key)?)
                .map(|k| Box::new(Es256Verifier(k)) as Box<dyn JwtVerifier>)
                .map_err(|_| ErrorKind::InvalidEcdsaKey.into())
        }
        Algorithm::EdDSA | Algorithm::ES256 => Err(ErrorKind::InvalidKeyFormat.into()),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

/// The bytes of a public key (never the RSA components, whose accessor panics).
fn raw_public(key: &DecodingKey) -> Result<&[u8], Error> {
    match key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => Ok(bytes),
        DecodingKeyKind::RsaModulusExponent { .. } => Err(ErrorKind::InvalidKeyFormat.into()),
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

/// Ed25519 signing (RFC 8032, deterministic).
struct EdDsaSigner(ed25519_dalek::SigningKey);

impl Signer<Vec<u8>> for EdDsaSigner {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let signature: ed25519_dalek::Signature = self.0.try_sign(message)?;
        Ok(signature.to_bytes().to_vec())
    }
}

impl JwtSigner for EdDsaSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

/// Ed25519 verification, strict (RFC 8032 5.1.7 plus no small-order keys or malleable
/// `S`).
struct EdDsaVerifier(ed25519_dalek::VerifyingKey);

impl Verifier<Vec<u8>> for EdDsaVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let signature = ed25519_dalek::Signature::from_slice(signature)?;
        self.0.verify_strict(message, &signature)
    }
}

impl JwtVerifier for EdDsaVerifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

/// ECDSA P-256 signing with SHA-256 (RFC 6979 deterministic nonces), `R || S`.
struct Es256Signer(p256::ecdsa::SigningKey);

impl Signer<Vec<u8>> for Es256Signer {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let signature: p256::ecdsa::Signature = self.0.try_sign(message)?;
        Ok(signature.to_bytes().to_vec())
    }
}

impl JwtSigner for Es256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

/// ECDSA P-256 verification of an `R || S` signature.
struct Es256Verifier(p256::ecdsa::VerifyingKey);

impl Verifier<Vec<u8>> for Es256Verifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let signature = p256::ecdsa::Signature::from_slice(signature)?;
        self.0.verify(message, &signature)
    }
}

impl JwtVerifier for Es256Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
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

    /// RFC 8037 Appendix A.1 (key) and A.4 (the signed JWS).
    const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC8037_INPUT: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
    const RFC8037_SIGNATURE: &str =
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

    #[test]
    fn eddsa_matches_the_rfc_8037_example() {
        install();
        let seed: [u8; 32] = URL_SAFE_NO_PAD
            .decode(RFC8037_D)
            .unwrap()
            .try_into()
            .unwrap();
        let key = faceid_keys::PrivateKey::from_seed(faceid_keys::Alg::EdDsa, &seed).unwrap();
        let signed = jsonwebtoken::crypto::sign(
            RFC8037_INPUT.as_bytes(),
            &EncodingKey::from_ed_der(&key.to_pkcs8_der()),
            Algorithm::EdDSA,
        )
        .unwrap();
        assert_eq!(signed, RFC8037_SIGNATURE);
        let public = URL_SAFE_NO_PAD.decode(RFC8037_X).unwrap();
        let decoding = DecodingKey::from_ed_der(&public);
        let verify = |signature: &str, input: &str| {
            jsonwebtoken::crypto::verify(signature, input.as_bytes(), &decoding, Algorithm::EdDSA)
                .unwrap_or(false)
        };
        assert!(verify(RFC8037_SIGNATURE, RFC8037_INPUT));
        assert!(!verify(RFC8037_SIGNATURE, &format!("{RFC8037_INPUT}x")));
        assert!(!verify(&RFC8037_SIGNATURE.replace('h', "i"), RFC8037_INPUT));
    }

    /// A signature made outside this code: `openssl dgst -sha256 -sign` (OpenSSL 3.0) over
    /// the input, its DER `r` and `s` written as JOSE `R || S`, and the key's public
    /// point from `openssl pkey -pubout`.
    const ES256_POINT: &str = "04220fb8909e39d7decdf27be599c11f580791402555a783630dcc50143f870e43806c6fe71cbc24857669e9fa56cab9a380635775f5e1f366c9de500394358d6d";
    const ES256_INPUT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJleHRlcm5hbCJ9";
    const ES256_R: &str = "FD6E8DBD90606444B85F1881BF025D7547CB3C13D3D0D636554224BF4EB3A4F6";
    const ES256_S: &str = "1CBD4F012B0541AC0AF13D4DA0E085D46C640ED73B98B3824B121D89797C11F5";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn es256_verifies_an_openssl_signature_and_round_trips() {
        install();
        let decoding = DecodingKey::from_ec_der(&unhex(ES256_POINT));
        let signature = URL_SAFE_NO_PAD.encode([unhex(ES256_R), unhex(ES256_S)].concat());
        let verify = |signature: &str, input: &str, key: &DecodingKey| {
            jsonwebtoken::crypto::verify(signature, input.as_bytes(), key, Algorithm::ES256)
                .unwrap_or(false)
        };
        assert!(verify(&signature, ES256_INPUT, &decoding));
        assert!(!verify(&signature, &format!("{ES256_INPUT}x"), &decoding));
        // The DER form OpenSSL writes is not a JOSE signature.
        let der = URL_SAFE_NO_PAD.encode(unhex(
            &format!("30450221 00{ES256_R}0220{ES256_S}").replace(' ', ""),
        ));
        assert!(!verify(&der, ES256_INPUT, &decoding));

        let key = faceid_keys::PrivateKey::generate(faceid_keys::Alg::Es256);
        let signed = jsonwebtoken::crypto::sign(
            b"a.b",
            &EncodingKey::from_ec_der(&key.to_pkcs8_der()),
            Algorithm::ES256,
        )
        .unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(&signed).unwrap().len(), 64);
        let own = DecodingKey::from_ec_der(&key.public().to_bytes());
        assert!(verify(&signed, "a.b", &own));
        assert!(!verify(&signed, "a.c", &own));
        assert!(!verify(&signed, "a.b", &decoding), "another key");
    }

    #[test]
    fn keys_of_the_wrong_family_or_size_are_refused_not_panicking() {
        install();
        let hmac = b"0123456789abcdef0123456789abcdef";
        for algorithm in [Algorithm::EdDSA, Algorithm::ES256] {
            let signed =
                jsonwebtoken::crypto::sign(b"a.b", &EncodingKey::from_secret(hmac), algorithm);
            assert!(signed.is_err(), "{algorithm:?}");
            let verified = jsonwebtoken::crypto::verify(
                "c2ln",
                b"a.b",
                &DecodingKey::from_secret(hmac),
                algorithm,
            );
            assert!(verified.is_err(), "{algorithm:?}");
        }
        // An HS256 verification with an asymmetric public key is a wrong-family key.
        let ed = faceid_keys::PrivateKey::generate(faceid_keys::Alg::EdDsa);
        let public = DecodingKey::from_ed_der(&ed.public().to_bytes());
        assert!(jsonwebtoken::crypto::verify("c2ln", b"a.b", &public, Algorithm::HS256).is_err());
        // Truncated and garbage keys, garbage signatures.
        for (key, algorithm) in [
            (DecodingKey::from_ed_der(&[1u8; 31]), Algorithm::EdDSA),
            (DecodingKey::from_ed_der(&[]), Algorithm::EdDSA),
            (DecodingKey::from_ec_der(&[4u8; 65]), Algorithm::ES256),
            (DecodingKey::from_ec_der(&[]), Algorithm::ES256),
            (
                DecodingKey::from_rsa_raw_components(b"n", b"e"),
                Algorithm::ES256,
            ),
        ] {
            let verified = jsonwebtoken::crypto::verify("c2ln", b"a.b", &key, algorithm);
            assert!(verified.is_err() || verified == Ok(false), "{algorithm:?}");
        }
        let good = DecodingKey::from_ed_der(&ed.public().to_bytes());
        for signature in ["", "c2ln", &URL_SAFE_NO_PAD.encode([0u8; 64])] {
            let verified = jsonwebtoken::crypto::verify(signature, b"a.b", &good, Algorithm::EdDSA);
            assert!(!verified.unwrap_or(false), "{signature:?}");
        }
        assert!(
            jsonwebtoken::crypto::sign(
                b"a.b",
                &EncodingKey::from_ed_der(b"junk"),
                Algorithm::EdDSA
            )
            .is_err()
        );
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
            Algorithm::ES384,
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
