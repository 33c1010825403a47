//! Secrets in the config are references (`env:NAME`, `file:PATH` or `credential:NAME`),
//! never literal text. They are resolved only when the daemon is built, into
//! `SecretString`s whose `Debug` prints `[REDACTED]`. Nothing in this module may log or
//! format a resolved value.
//!
//! `credential:NAME` is systemd's `LoadCredential=`: the file `NAME` in the folder
//! `$CREDENTIALS_DIRECTORY` that systemd sets up for the service (readable by it alone,
//! never in the environment or the unit's `Environment=`).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

/// Where a secret lives. The reference itself is not secret and may be shown.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
    /// A systemd credential: `$CREDENTIALS_DIRECTORY/NAME`.
    Credential(String),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
            SecretRef::Credential(name) => write!(f, "credential:{name}"),
        }
    }
}

pub const SECRET_FORM: &str = "a secret must be a reference, `env:NAME`, `file:PATH` or `credential:NAME` (systemd LoadCredential=); literal secrets are not allowed in the config";

/// The variable systemd sets to the service's credentials folder.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

impl SecretRef {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix("env:") {
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            return if valid {
                Ok(SecretRef::Env(name.to_owned()))
            } else {
                Err(format!(
                    "`env:{name}` is not a valid environment variable name"
                ))
            };
        }
        if let Some(path) = text.strip_prefix("file:") {
            return if path.is_empty() {
                Err("`file:` needs a path".to_owned())
            } else {
                Ok(SecretRef::File(PathBuf::from(path)))
            };
        }
        if let Some(name) = text.strip_prefix("credential:") {
            // systemd's own rule for credential names: a file name, not a path.
            let valid = !name.is_empty() && name != "." && name != ".." && !name.contains('/');
            return if valid {
                Ok(SecretRef::Credential(name.to_owned()))
            } else {
                Err(format!(
                    "`credential:{name}` is not a credential name (the name given to LoadCredential=, without `/`)"
                ))
            };
        }
        // Deliberately do not echo the text: it may be the secret itself.
        Err(SECRET_FORM.to_owned())
    }

    /// Make a relative `file:` path relative to the config file's folder.
    pub fn relative_to(self, base: &Path) -> Self {
        match self {
            SecretRef::File(path) if path.is_relative() => SecretRef::File(base.join(path)),
            other => other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    #[error("cannot read secret file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("secret {0} is empty")]
    Empty(String),
    #[error(
        "credential:{0} needs $CREDENTIALS_DIRECTORY, which is not set: run under systemd with `LoadCredential={0}:PATH`, or use env:/file:"
    )]
    NoCredentialsDirectory(String),
    #[error(
        "credential:{name}: no readable file {name} in $CREDENTIALS_DIRECTORY ({dir}): {reason}; is `LoadCredential={name}:PATH` in the unit?"
    )]
    Credential {
        name: String,
        dir: String,
        reason: String,
    },
}

/// Resolves references against the process environment and the file system, with
/// optional overrides (the demo and the tests inject values without touching the
/// process environment).
#[derive(Default, Clone)]
pub struct SecretResolver {
    overrides: HashMap<String, SecretString>,
    /// systemd's credentials folder, read from the environment once, at `from_env`.
    credentials_directory: Option<PathBuf>,
}

impl fmt::Debug for SecretResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.overrides.keys().collect();
        names.sort();
        f.debug_struct("SecretResolver")
            .field("overrides", &names)
            .field("credentials_directory", &self.credentials_directory)
            .finish()
    }
}

impl SecretResolver {
    pub fn from_env() -> Self {
        Self {
            overrides: HashMap::new(),
            credentials_directory: std::env::var_os(CREDENTIALS_DIRECTORY)
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from),
        }
    }

    /// Answer `credential:NAME` from `dir` instead of `$CREDENTIALS_DIRECTORY`.
    pub fn with_credentials_directory(mut self, dir: impl Into<PathBuf>) -> Self {
        self.credentials_directory = Some(dir.into());
        self
    }

    /// Answer `env:NAME` with `value` instead of the process environment.
    pub fn with_override(mut self, name: &str, value: impl Into<String>) -> Self {
        self.overrides
            .insert(name.to_owned(), SecretString::from(value.into()));
        self
    }

    pub fn resolve(&self, reference: &SecretRef) -> Result<SecretString, SecretError> {
        let value = match reference {
            SecretRef::Env(name) => {
                if let Some(value) = self.overrides.get(name) {
                    return Ok(value.clone());
                }
                std::env::var(name).map_err(|_| SecretError::MissingEnv(name.clone()))?
            }
            SecretRef::File(path) => read_trimmed(path).map_err(|e| SecretError::File {
                path: path.display().to_string(),
                reason: e.kind().to_string(),
            })?,
            SecretRef::Credential(name) => {
                let Some(dir) = &self.credentials_directory else {
                    return Err(SecretError::NoCredentialsDirectory(name.clone()));
                };
                read_trimmed(&dir.join(name)).map_err(|e| SecretError::Credential {
                    name: name.clone(),
                    dir: dir.display().to_string(),
                    reason: e.kind().to_string(),
                })?
            }
        };
        if value.is_empty() {
            return Err(SecretError::Empty(reference.to_string()));
        }
        Ok(SecretString::from(value))
    }
}

/// A secret file's text. Such files usually end with a newline that is not part of the
/// secret.
fn read_trimmed(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?
        .trim_end_matches(['\n', '\r'])
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn literal_text_is_refused_without_being_echoed() {
        let err = SecretRef::parse("xoxb-very-secret")
            .err()
            .unwrap_or_default();
        assert!(err.contains("env:NAME"));
        assert!(!err.contains("xoxb"));
    }

    #[test]
    fn references_parse() {
        assert_eq!(
            SecretRef::parse("env:SLACK_URL"),
            Ok(SecretRef::Env("SLACK_URL".into()))
        );
        assert_eq!(
            SecretRef::parse("file:/run/creds/x"),
            Ok(SecretRef::File("/run/creds/x".into()))
        );
        assert_eq!(
            SecretRef::parse("credential:amazon-refresh-token"),
            Ok(SecretRef::Credential("amazon-refresh-token".into()))
        );
        assert!(SecretRef::parse("env:1BAD").is_err());
        assert!(SecretRef::parse("file:").is_err());
        assert!(SecretRef::parse("credential:").is_err());
        assert!(SecretRef::parse("credential:../etc/shadow").is_err());
        assert!(SecretRef::parse("credential:..").is_err());
    }

    #[test]
    fn credentials_are_read_from_the_credentials_directory_without_their_newline() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        assert!(std::fs::write(dir.path().join("slack-webhook"), "canary-77e2\n").is_ok());
        let resolver = SecretResolver::default().with_credentials_directory(dir.path());
        let secret = resolver.resolve(&SecretRef::Credential("slack-webhook".into()));
        assert_eq!(
            secret.map(|s| s.expose_secret().to_owned()),
            Ok("canary-77e2".to_owned())
        );
        // A relative config base never moves a credential.
        let moved = SecretRef::Credential("slack-webhook".into()).relative_to(Path::new("/etc"));
        assert_eq!(moved, SecretRef::Credential("slack-webhook".into()));
    }

    #[test]
    fn a_missing_credential_names_itself_and_the_folder_never_the_content() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let resolver = SecretResolver::default().with_credentials_directory(dir.path());
        let missing = resolver
            .resolve(&SecretRef::Credential("amazon-refresh-token".into()))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            missing.contains("credential:amazon-refresh-token"),
            "{missing}"
        );
        assert!(
            missing.contains(&dir.path().display().to_string()),
            "{missing}"
        );
        assert!(
            missing.contains("LoadCredential=amazon-refresh-token"),
            "{missing}"
        );

        // An empty credential is refused like an empty file.
        assert!(std::fs::write(dir.path().join("empty"), "\n").is_ok());
        let empty = resolver.resolve(&SecretRef::Credential("empty".into()));
        assert_eq!(
            empty.err(),
            Some(SecretError::Empty("credential:empty".into()))
        );
    }

    #[test]
    fn a_credential_without_credentials_directory_says_so() {
        let resolver = SecretResolver::default();
        let error = resolver.resolve(&SecretRef::Credential("slack-webhook".into()));
        assert_eq!(
            error.as_ref().err(),
            Some(&SecretError::NoCredentialsDirectory("slack-webhook".into()))
        );
        let text = error.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains("$CREDENTIALS_DIRECTORY") && text.contains("credential:slack-webhook"),
            "{text}"
        );
    }

    #[test]
    fn file_secrets_lose_their_trailing_newline() {
        let dir = tempfile::tempdir().ok();
        let Some(dir) = dir else { return };
        let path = dir.path().join("token");
        assert!(std::fs::write(&path, "s3cr3t\n").is_ok());
        let secret = SecretResolver::from_env().resolve(&SecretRef::File(path));
        assert_eq!(
            secret.map(|s| s.expose_secret().to_owned()),
            Ok("s3cr3t".to_owned())
        );
    }

    #[test]
    fn overrides_win_and_missing_names_are_reported() {
        let resolver = SecretResolver::from_env().with_override("NIGHTDESK_TEST_X", "canary-93f1");
        let got = resolver.resolve(&SecretRef::Env("NIGHTDESK_TEST_X".into()));
        assert_eq!(
            got.map(|s| s.expose_secret().to_owned()),
            Ok("canary-93f1".to_owned())
        );
        let missing = resolver.resolve(&SecretRef::Env("NIGHTDESK_SURELY_UNSET_42".into()));
        assert_eq!(
            missing.err(),
            Some(SecretError::MissingEnv("NIGHTDESK_SURELY_UNSET_42".into()))
        );
        let debug = format!("{resolver:?}");
        assert!(debug.contains("NIGHTDESK_TEST_X") && !debug.contains("canary-93f1"));
    }
}
