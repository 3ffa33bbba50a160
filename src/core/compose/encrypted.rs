//! Secret and config files encrypted with age: recognising them (a name ending in `.age`, or the
//! binary or armored age header) and decrypting them in memory with the cluster's identities.
//!
//! Pure: bytes and identities in, plaintext out. The identities' text comes from
//! `SHOAL_AGE_KEY` / `SHOAL_AGE_KEY_FILE`, read at the edge (`source::interpolation_env`) and
//! handed to the configuration loader under [`AGE_KEY_VAR`]. No message here ever holds key
//! material or plaintext.

use age::x25519;
use std::io::Read;

/// The variable holding the age identities (one `AGE-SECRET-KEY-1…` per line, `#` comments
/// allowed, as `age-keygen` writes them).
pub const AGE_KEY_VAR: &str = "SHOAL_AGE_KEY";
/// The variable naming a file of age identities.
pub const AGE_KEY_FILE_VAR: &str = "SHOAL_AGE_KEY_FILE";

const BINARY_HEADER: &[u8] = b"age-encryption.org/v1\n";
const ARMOR_HEADER: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

/// Why an encrypted file could not be decrypted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AgeError {
    /// No identity was given.
    #[error("no age identity is set")]
    NoIdentity,
    /// `SHOAL_AGE_KEY_FILE` names a file that cannot be read (and no other identity decrypts).
    #[error("{AGE_KEY_FILE_VAR} is set, but its file cannot be read: {0}")]
    UnreadableKeyFile(String),
    /// The identities' text is not a list of age identities.
    #[error("{AGE_KEY_VAR} holds something that is not an age identity on line {line}")]
    InvalidIdentity {
        /// The 1-based line of the identities' text (its content is never shown).
        line: usize,
    },
    /// None of the identities is a recipient of the file.
    #[error("none of the {count} age identities given can decrypt it")]
    NoMatchingKey {
        /// How many identities were tried.
        count: usize,
    },
    /// The file is not a valid age file, or it was damaged.
    #[error("it is damaged, or not an age file: {0}")]
    Malformed(String),
}

/// The age identities shoal decrypts with.
#[derive(Clone)]
pub struct Keys {
    parsed: Result<Vec<x25519::Identity>, AgeError>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.parsed {
            Ok(keys) => write!(f, "Keys({} identities)", keys.len()),
            Err(e) => write!(f, "Keys({e})"),
        }
    }
}

impl Default for Keys {
    fn default() -> Self {
        Keys::none()
    }
}

impl Keys {
    /// No identity: encrypted files are errors.
    pub fn none() -> Keys {
        Keys {
            parsed: Err(AgeError::NoIdentity),
        }
    }

    /// The identities in `text` (`age-keygen`'s format: one per line, `#` comments); a text
    /// that holds none, or anything else, gives keys that fail with the reason.
    pub fn parse(text: Option<&str>) -> Keys {
        let Some(text) = text else {
            return Keys::none();
        };
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.parse::<x25519::Identity>() {
                Ok(key) => keys.push(key),
                Err(_) => {
                    return Keys {
                        parsed: Err(AgeError::InvalidIdentity { line: index + 1 }),
                    }
                }
            }
        }
        Keys {
            parsed: if keys.is_empty() {
                Err(AgeError::NoIdentity)
            } else {
                Ok(keys)
            },
        }
    }

    /// These keys, noting that the file `SHOAL_AGE_KEY_FILE` names could not be read
    /// (`problem`, with its path): when no other identity is given, that is the error.
    pub fn with_unreadable_file(self, problem: Option<&str>) -> Keys {
        match (problem, &self.parsed) {
            (Some(problem), Err(AgeError::NoIdentity)) => Keys {
                parsed: Err(AgeError::UnreadableKeyFile(problem.to_string())),
            },
            _ => self,
        }
    }

    /// The plaintext of the age file `bytes` (binary or armored).
    pub fn decrypt(&self, bytes: &[u8]) -> Result<Vec<u8>, AgeError> {
        let keys = self.parsed.as_ref().map_err(Clone::clone)?;
        let malformed = |e: &dyn std::fmt::Display| AgeError::Malformed(e.to_string());
        let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(bytes))
            .map_err(|e| AgeError::Malformed(damage(&e)))?;
        let mut reader = decryptor
            .decrypt(keys.iter().map(|k| k as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => AgeError::NoMatchingKey { count: keys.len() },
                other => AgeError::Malformed(damage(&other)),
            })?;
        let mut plaintext = Vec::new();
        reader
            .read_to_end(&mut plaintext)
            .map_err(|e| malformed(&e))?;
        Ok(plaintext)
    }
}

/// What is wrong with a file age cannot read, in words that fit a damaged file: age's own text
/// for an unreadable header asks whether age is out of date.
fn damage(error: &age::DecryptError) -> String {
    match error {
        age::DecryptError::UnknownFormat | age::DecryptError::InvalidHeader => {
            "its header cannot be read".to_string()
        }
        age::DecryptError::InvalidMac => "its header fails its integrity check".to_string(),
        age::DecryptError::DecryptionFailed => "its content fails its integrity check".to_string(),
        other => other.to_string(),
    }
}

/// Whether the file `path` with content `bytes` is age-encrypted: its name ends in `.age`, or it
/// starts with the age header (binary or armored).
pub fn is_encrypted(path: &str, bytes: &[u8]) -> bool {
    path.ends_with(".age") || bytes.starts_with(BINARY_HEADER) || {
        let start = bytes
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(bytes.len());
        bytes[start..].starts_with(ARMOR_HEADER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;
    use std::io::Write;

    fn encrypt(to: &x25519::Identity, plaintext: &[u8], armor: bool) -> Vec<u8> {
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&to.to_public() as _)).unwrap();
        let format = if armor {
            age::armor::Format::AsciiArmor
        } else {
            age::armor::Format::Binary
        };
        let mut out = Vec::new();
        let armored = age::armor::ArmoredWriter::wrap_output(&mut out, format).unwrap();
        let mut writer = encryptor.wrap_output(armored).unwrap();
        writer.write_all(plaintext).unwrap();
        writer.finish().unwrap().finish().unwrap();
        out
    }

    fn text(keys: &[&x25519::Identity]) -> String {
        keys.iter()
            .map(|k| {
                format!(
                    "# public key: {}\n{}\n",
                    k.to_public(),
                    k.to_string().expose_secret()
                )
            })
            .collect()
    }

    #[test]
    fn binary_and_armored_files_decrypt_with_any_of_several_identities() {
        let (one, two) = (x25519::Identity::generate(), x25519::Identity::generate());
        let keys = Keys::parse(Some(&text(&[&one, &two])));
        for armor in [false, true] {
            let sealed = encrypt(&two, b"s3cret", armor);
            assert!(is_encrypted("db_password.txt", &sealed));
            assert_eq!(keys.decrypt(&sealed).unwrap(), b"s3cret");
        }
    }

    #[test]
    fn missing_wrong_and_invalid_identities_are_told_apart() {
        let (one, other) = (x25519::Identity::generate(), x25519::Identity::generate());
        let sealed = encrypt(&one, b"s3cret", false);
        assert_eq!(Keys::none().decrypt(&sealed), Err(AgeError::NoIdentity));
        assert_eq!(
            Keys::parse(Some("# only a comment\n")).decrypt(&sealed),
            Err(AgeError::NoIdentity)
        );
        assert_eq!(
            Keys::parse(Some(&text(&[&other]))).decrypt(&sealed),
            Err(AgeError::NoMatchingKey { count: 1 })
        );
        let invalid = Keys::parse(Some("AGE-SECRET-KEY-1NOPE\n"));
        let err = invalid.decrypt(&sealed).unwrap_err();
        assert_eq!(err, AgeError::InvalidIdentity { line: 1 });
        assert!(!err.to_string().contains("NOPE"));
        assert!(!format!("{invalid:?}").contains("NOPE"));
        let keys = Keys::parse(Some(&text(&[&one])));
        assert!(!format!("{keys:?}").contains("AGE-SECRET"));
        assert!(matches!(
            keys.decrypt(b"age-encryption.org/v1\ngarbage"),
            Err(AgeError::Malformed(_))
        ));
    }

    #[test]
    fn a_damaged_file_is_called_damaged() {
        let one = x25519::Identity::generate();
        let keys = Keys::parse(Some(&text(&[&one])));
        let sealed = encrypt(&one, b"hunter2", false);
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        for damaged in [
            b"age-encryption.org/v1\ngarbage".to_vec(),
            sealed[..sealed.len() / 2].to_vec(),
            sealed[..40].to_vec(),
            flipped,
        ] {
            let said = keys.decrypt(&damaged).unwrap_err().to_string();
            assert!(said.starts_with("it is damaged"), "{said}");
            assert!(!said.to_lowercase().contains("upgrad"), "{said}");
        }
    }

    #[test]
    fn an_unreadable_key_file_is_the_error_when_no_other_identity_is_set() {
        let problem = "/keys/age.txt: Permission denied (os error 13)";
        let sealed = encrypt(&x25519::Identity::generate(), b"hunter2", false);
        let said = Keys::parse(None)
            .with_unreadable_file(Some(problem))
            .decrypt(&sealed)
            .unwrap_err();
        assert_eq!(said, AgeError::UnreadableKeyFile(problem.to_string()));
        assert!(said
            .to_string()
            .contains("SHOAL_AGE_KEY_FILE is set, but its file cannot be read: /keys/age.txt"));
        assert_eq!(
            Keys::parse(None)
                .with_unreadable_file(None)
                .decrypt(&sealed),
            Err(AgeError::NoIdentity)
        );
    }

    #[test]
    fn plain_files_are_not_encrypted() {
        assert!(!is_encrypted("db_password.txt", b"hunter2"));
        assert!(is_encrypted("db_password.txt.age", b"whatever"));
        assert!(is_encrypted(
            "x",
            b"\n-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n"
        ));
    }
}
