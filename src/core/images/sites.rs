//! Where compose files name images: every `services.<name>.image` scalar, with its position, so
//! that [`super::rewrite`] can change it in place. An image written with `${VAR}` is not a site
//! (the file does not hold the reference): it is reported, with why it is left alone.

use crate::diag::Diagnostic;
use crate::yaml::{self, Pos, Value};

/// One `image:` scalar of a compose file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The compose file, relative to the repository.
    pub file: String,
    /// The service whose image it is.
    pub service: String,
    /// Where the scalar starts (for an alias, where its anchor's scalar is written).
    pub pos: Pos,
    /// The reference as written.
    pub image: String,
}

/// The image sites of the compose file `file`, and warnings for those it cannot rewrite. A file
/// that is not valid YAML gives an error diagnostic and no sites.
pub fn sites(file: &str, bytes: &[u8]) -> (Vec<Site>, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let mut diags = Vec::new();
    let root = match yaml::parse(bytes) {
        Ok(parsed) => parsed.root,
        Err(e) => {
            diags.push(yaml::yaml_diagnostic(file, &e));
            return (out, diags);
        }
    };
    let Some(services) = root.as_ref().and_then(|r| r.get("services")) else {
        return (out, diags);
    };
    for entry in services.entries().unwrap_or_default() {
        let Some(node) = entry.value.get("image") else {
            continue;
        };
        let Value::Scalar(scalar) = &node.value else {
            continue;
        };
        if scalar.text.contains('$') {
            diags.push(
                Diagnostic::warning(
                    file,
                    node.pos.line,
                    node.pos.column,
                    format!(
                        "the image of service `{}` is `{}`: an image given through `${{VAR}}` is not rewritten by image policies (the file does not hold the reference)",
                        entry.key, scalar.text
                    ),
                )
                .with_help("write the reference in the compose file for `shoal images update` to follow it"),
            );
            continue;
        }
        out.push(Site {
            file: file.to_string(),
            service: entry.key.clone(),
            pos: node.pos,
            image: scalar.text.clone(),
        });
    }
    (out, diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_images_and_skips_interpolated_ones() {
        let text = "services:\n  app:\n    image: \"localhost:5001/app:1.2.0\"\n  web:\n    image: ${WEB_IMAGE}\n  db:\n    build: .\n";
        let (found, diags) = sites("docker-compose.yml", text.as_bytes());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].service, "app");
        assert_eq!(found[0].image, "localhost:5001/app:1.2.0");
        assert_eq!(found[0].pos.line, 3);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].line, 5);
        assert!(diags[0].message.contains("not rewritten"), "{}", diags[0]);
    }

    #[test]
    fn a_broken_file_is_an_error_not_a_crash() {
        let (found, diags) = sites("c.yml", b"services: [\n");
        assert!(found.is_empty());
        assert_eq!(diags.len(), 1);
        let (found, _) = sites("c.yml", b"services: 3\n");
        assert!(found.is_empty());
    }
}
