//! HMAC-SHA256 of message bodies, in hex: the signature shoal's notifications carry
//! (`X-Shoal-Signature`) and the one the forges' push webhooks are checked against.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The hex HMAC-SHA256 of `body` under `secret` (as GitHub and Gitea sign their webhooks).
pub fn hmac_sha256_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_rfc_4231_test_case_2() {
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
