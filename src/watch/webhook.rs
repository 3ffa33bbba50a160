//! Webhook authentication for `POST /hooks/git`, as the forges sign their push events.
//!
//! - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`;
//! - Gitea and Gogs: `X-Gitea-Signature` / `X-Gogs-Signature: <hex HMAC-SHA256 of the body>`;
//! - GitLab: `X-Gitlab-Token: <the secret itself>`.
//!
//! Every comparison is in constant time. The body is not otherwise read: whatever was pushed,
//! the watcher fetches and reconciles the branch it follows.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The forge whose signature matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forge {
    /// `X-Hub-Signature-256`.
    GitHub,
    /// `X-Gitea-Signature` or `X-Gogs-Signature`.
    Gitea,
    /// `X-Gitlab-Token`.
    GitLab,
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No signature header at all.
    #[error("no signature: send X-Hub-Signature-256 (GitHub), X-Gitea-Signature (Gitea) or X-Gitlab-Token (GitLab)")]
    Missing,
    /// A signature header that does not match the secret.
    #[error("the signature does not match the webhook secret")]
    Mismatch,
}

fn hmac_matches(secret: &[u8], body: &[u8], signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

fn token_matches(secret: &[u8], token: &str) -> bool {
    // Hashing both first keeps the comparison's time independent of the lengths too.
    let expected = Sha256::digest(secret);
    let given = Sha256::digest(token.as_bytes());
    expected.ct_eq(&given).into()
}

/// Checks a request's signature headers (looked up case-insensitively through `header`)
/// against `secret`. Any one header that matches authenticates the request.
pub fn verify<'a>(
    secret: &[u8],
    header: impl Fn(&str) -> Option<&'a str>,
    body: &[u8],
) -> Result<Forge, WebhookError> {
    let mut seen = false;
    if let Some(value) = header("x-hub-signature-256") {
        seen = true;
        if value
            .strip_prefix("sha256=")
            .is_some_and(|hex| hmac_matches(secret, body, hex))
        {
            return Ok(Forge::GitHub);
        }
    }
    for name in ["x-gitea-signature", "x-gogs-signature"] {
        if let Some(value) = header(name) {
            seen = true;
            if hmac_matches(secret, body, value) {
                return Ok(Forge::Gitea);
            }
        }
    }
    if let Some(value) = header("x-gitlab-token") {
        seen = true;
        if token_matches(secret, value) {
            return Ok(Forge::GitLab);
        }
    }
    Err(if seen {
        WebhookError::Mismatch
    } else {
        WebhookError::Missing
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::hmac_sha256_hex as sign;

    fn check(headers: &[(&str, &str)], body: &[u8]) -> Result<Forge, WebhookError> {
        verify(
            b"s3cret",
            |name| {
                headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| *v)
            },
            body,
        )
    }

    #[test]
    fn github_signature_matches_the_published_example() {
        // The example of GitHub's "Validating webhook deliveries" page.
        let signature = sign(b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            signature,
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn each_forge_is_recognized() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = sign(b"s3cret", body);
        let github = format!("sha256={good}");
        assert_eq!(
            check(&[("X-Hub-Signature-256", &github)], body),
            Ok(Forge::GitHub)
        );
        assert_eq!(
            check(&[("X-Gitea-Signature", &good)], body),
            Ok(Forge::Gitea)
        );
        assert_eq!(
            check(&[("X-Gogs-Signature", &good)], body),
            Ok(Forge::Gitea)
        );
        assert_eq!(
            check(&[("X-Gitlab-Token", "s3cret")], body),
            Ok(Forge::GitLab)
        );
    }

    #[test]
    fn wrong_or_missing_signatures_are_refused() {
        let body = b"payload";
        let other = sign(b"other", body);
        assert_eq!(check(&[], body), Err(WebhookError::Missing));
        assert_eq!(
            check(&[("X-Hub-Signature-256", &format!("sha256={other}"))], body),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            check(&[("X-Hub-Signature-256", &sign(b"s3cret", body))], body),
            Err(WebhookError::Mismatch),
            "GitHub's header needs its sha256= prefix"
        );
        assert_eq!(
            check(&[("X-Gitea-Signature", "zz")], body),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            check(&[("X-Gitlab-Token", "s3cre")], body),
            Err(WebhookError::Mismatch)
        );
        let signed_other_body = sign(b"s3cret", b"another payload");
        assert_eq!(
            check(&[("X-Gitea-Signature", &signed_other_body)], body),
            Err(WebhookError::Mismatch)
        );
    }
}
