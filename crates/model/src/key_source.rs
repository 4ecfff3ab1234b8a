//! Where a host's private key comes from: a file on the host, a systemd credential, or a
//! command that prints it (a secrets manager's CLI: `pass`, `vault`, `sops`...).
//!
//! In `fabric.toml` and in desired states a source is one string, or for a command a list of
//! strings whose first names the kind:
//!
//! ```toml
//! key_source = "file:/etc/wgfabric/private.key"
//! key_source = "systemd-credential:wgfabric.key"
//! key_source = ["exec:pass", "show", "wgfabric/laptop-ana"]
//! ```
//!
//! A command is an argument vector, never a shell string. It runs with `WGFABRIC_HOST` and
//! `WGFABRIC_INTERFACE` added to its environment and under a timeout; what it prints is held
//! only in zeroized memory and never appears in a message or a log.

use core::fmt;
use std::ffi::OsString;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wgfabric_proto::keys::PrivateKey;
use zeroize::Zeroizing;

use crate::host_path::HostPath;
use crate::key_file::read_key_file;
use crate::wallclock::monotonic;

/// How long a key command may run unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes read from a key command's output; a key is 44.
const MAX_OUTPUT: u64 = 4096;
/// Most words in a key command.
const MAX_WORDS: usize = 64;
/// Longest word of a key command.
const MAX_WORD: usize = 4096;
/// Longest systemd credential name (a file name).
const MAX_CREDENTIAL: usize = 255;

/// A private key's source.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// A file on the host, 0600, as `wg genkey` writes it.
    File(HostPath),
    /// A credential systemd passes the service, in `$CREDENTIALS_DIRECTORY/NAME`.
    SystemdCredential(String),
    /// A program and its arguments; its standard output is the base64 key.
    Exec(Vec<String>),
}

/// Why a key source was rejected, or why fetching a key failed. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeySourceError(String);

impl KeySource {
    /// Parses the words of a source: `file:PATH`, `systemd-credential:NAME`, or `exec:PROGRAM`
    /// followed by its arguments.
    ///
    /// # Errors
    /// What is wrong, and how the source is written.
    pub fn from_words<S: AsRef<str>>(words: &[S]) -> Result<Self, KeySourceError> {
        let Some((first, args)) = words.split_first() else {
            return Err(KeySourceError(format!("an empty key source; {}", Self::FORMS)));
        };
        let first = first.as_ref();
        if let Some(program) = first.strip_prefix("exec:") {
            let argv: Vec<String> = std::iter::once(program)
                .chain(args.iter().map(AsRef::as_ref))
                .map(str::to_owned)
                .collect();
            check_command(&argv)?;
            return Ok(Self::Exec(argv));
        }
        if !args.is_empty() {
            return Err(KeySourceError(format!(
                "only an `exec:` source takes arguments; {}",
                Self::FORMS
            )));
        }
        // A bare absolute path is a file, as `private_key_file` was written before sources.
        if let Some(path) = first.strip_prefix("file:").or(first.starts_with('/').then_some(first))
        {
            let path = path.parse().map_err(|e| KeySourceError(format!("key file {e}")))?;
            return Ok(Self::File(path));
        }
        if let Some(name) = first.strip_prefix("systemd-credential:") {
            check_credential(name)?;
            return Ok(Self::SystemdCredential(name.to_owned()));
        }
        Err(KeySourceError(format!(
            "`{}` is not a key source; {}",
            first.escape_debug(),
            Self::FORMS
        )))
    }

    /// How sources are written, for messages.
    const FORMS: &'static str = "write \"file:/etc/wgfabric/private.key\", \
        \"systemd-credential:NAME\" or [\"exec:PROGRAM\", \"ARG\", ...]";

    /// The source's words, as [`KeySource::from_words`] reads them.
    pub fn words(&self) -> Vec<String> {
        match self {
            Self::File(path) => vec![format!("file:{path}")],
            Self::SystemdCredential(name) => vec![format!("systemd-credential:{name}")],
            Self::Exec(argv) => {
                let mut words = argv.clone();
                if let Some(program) = words.first_mut() {
                    program.insert_str(0, "exec:");
                }
                words
            }
        }
    }

    /// The key file, for a file source.
    pub fn file(&self) -> Option<&HostPath> {
        match self {
            Self::File(path) => Some(path),
            Self::SystemdCredential(_) | Self::Exec(_) => None,
        }
    }

    /// The words as a shell reads them back, each quoted where it needs to be: for hooks
    /// that run `wgfabric fetchkey` (wg-quick runs its hooks through bash).
    pub fn shell_words(&self) -> Vec<String> {
        self.words().iter().map(|word| shell_quote(word)).collect()
    }

    /// Reads the key, for `host`'s `interface`; a command gets at most `timeout`.
    ///
    /// # Errors
    /// Why there is no key: the file or credential is missing or readable by others, the
    /// command failed, timed out or printed something that is not a private key.
    pub fn fetch(
        &self,
        host: &str,
        interface: &str,
        timeout: Duration,
    ) -> Result<PrivateKey, KeySourceError> {
        match self {
            Self::File(path) => {
                read_key_file(path.as_path()).map_err(|e| KeySourceError(e.to_string()))
            }
            Self::SystemdCredential(name) => {
                read_credential(std::env::var_os("CREDENTIALS_DIRECTORY"), name)
            }
            Self::Exec(argv) => run_command(argv, host, interface, timeout),
        }
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.words().join(" "))
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The serialized form: one string, or a list of strings.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Words {
    One(String),
    Many(Vec<String>),
}

impl Serialize for KeySource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut words = self.words();
        if words.len() == 1 && !matches!(self, Self::Exec(_)) {
            Words::One(words.remove(0)).serialize(serializer)
        } else {
            Words::Many(words).serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for KeySource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let words = match Words::deserialize(deserializer) {
            Ok(Words::One(word)) => vec![word],
            Ok(Words::Many(words)) => words,
            Err(_) => {
                return Err(serde::de::Error::custom(format!(
                    "a key source is a string or a list of strings; {}",
                    Self::FORMS
                )))
            }
        };
        Self::from_words(&words).map_err(serde::de::Error::custom)
    }
}

/// Characters a command word may not hold: control characters break every line-based format,
/// `#` starts a comment in wg-quick's files and `%` is its substitution character.
fn check_command(argv: &[String]) -> Result<(), KeySourceError> {
    if argv.first().is_none_or(String::is_empty) {
        return Err(KeySourceError("`exec:` needs a program: [\"exec:PROGRAM\", ...]".into()));
    }
    if argv.len() > MAX_WORDS {
        return Err(KeySourceError(format!("a key command has at most {MAX_WORDS} words")));
    }
    for word in argv {
        if word.len() > MAX_WORD {
            return Err(KeySourceError(format!(
                "a key command's word is at most {MAX_WORD} bytes"
            )));
        }
        if let Some(c) = word.chars().find(|c| c.is_control() || matches!(c, '#' | '%')) {
            let what = if c.is_control() {
                format!("the control character {}", c.escape_debug())
            } else {
                format!("`{c}`")
            };
            return Err(KeySourceError(format!(
                "key command word `{}` contains {what}, which wg-quick's configuration cannot \
                 carry; wrap the command in a script and name the script instead",
                word.escape_debug()
            )));
        }
    }
    Ok(())
}

fn check_credential(name: &str) -> Result<(), KeySourceError> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.is_empty()
        || name.len() > MAX_CREDENTIAL
        || name.starts_with('.')
        || !name.chars().all(valid)
    {
        return Err(KeySourceError(format!(
            "`{}` is not a systemd credential name: use 1 to {MAX_CREDENTIAL} letters, digits, \
             `.`, `_`, `-` or `@`, not starting with `.`",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// Reads the credential `name` from the directory systemd passes the service.
fn read_credential(dir: Option<OsString>, name: &str) -> Result<PrivateKey, KeySourceError> {
    let Some(dir) = dir else {
        return Err(KeySourceError(format!(
            "systemd credential `{name}`: $CREDENTIALS_DIRECTORY is not set; run under \
             systemd with LoadCredential={name}:PATH (or LoadCredentialEncrypted=) in the unit"
        )));
    };
    read_key_file(&PathBuf::from(dir).join(name))
        .map_err(|e| KeySourceError(format!("systemd credential `{name}`: {e}")))
}

/// `word` as one shell word: as it is when it holds nothing a shell reads, else single-quoted.
pub fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | ':');
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Runs a key command and reads the key it prints.
fn run_command(
    argv: &[String],
    host: &str,
    interface: &str,
    timeout: Duration,
) -> Result<PrivateKey, KeySourceError> {
    let shown = argv.join(" ");
    let fail = |why: String| KeySourceError(format!("key command `{shown}`: {why}"));
    let (program, args) = argv.split_first().ok_or_else(|| fail("no program".into()))?;
    let mut child = Command::new(program)
        .args(args)
        .env("WGFABRIC_HOST", host)
        .env("WGFABRIC_INTERFACE", interface)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
    // Both pipes are drained while the command runs, so a chatty one cannot block on a full
    // pipe; anything past the bound is discarded.
    let stdout = child.stdout.take().map(|pipe| {
        std::thread::spawn(move || {
            let mut out = Zeroizing::new(Vec::new());
            let mut pipe = pipe;
            let _ = pipe.by_ref().take(MAX_OUTPUT + 1).read_to_end(&mut out);
            let _ = std::io::copy(&mut pipe, &mut std::io::sink());
            out
        })
    });
    let stderr = child.stderr.take().map(|pipe| {
        std::thread::spawn(move || {
            let mut err = Vec::new();
            let mut pipe = pipe;
            let _ = pipe.by_ref().take(MAX_OUTPUT).read_to_end(&mut err);
            let _ = std::io::copy(&mut pipe, &mut std::io::sink());
            err
        })
    });
    let deadline = monotonic() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if monotonic() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "no key within {:.1} s; it was stopped",
                    timeout.as_secs_f64()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(fail(format!("waiting for it: {e}"))),
        }
    };
    let out = stdout.and_then(|t| t.join().ok()).unwrap_or_default();
    let err = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    if !status.success() {
        let said = last_line(&err);
        let said = if said.is_empty() { String::new() } else { format!(": {said}") };
        return Err(fail(format!("it failed ({status}){said}")));
    }
    if out.len() as u64 > MAX_OUTPUT {
        return Err(fail(format!("it printed more than {MAX_OUTPUT} bytes; a key is 44")));
    }
    let text = std::str::from_utf8(&out)
        .map_err(|_| fail("it printed something that is not text".into()))?;
    // Password stores keep the secret on the first line and notes after it.
    let first = text.lines().next().unwrap_or_default().trim();
    PrivateKey::from_base64(first).map_err(|_| {
        fail(format!(
            "its first line ({} bytes) is not a private key as `wg genkey` prints it: 44 \
             characters of base64",
            first.len()
        ))
    })
}

/// The last non-empty line of a command's error output, escaped and shortened, for a message.
fn last_line(err: &[u8]) -> String {
    let text = String::from_utf8_lossy(err);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
    line.chars().take(200).flat_map(char::escape_debug).collect()
}

#[cfg(test)]
mod tests;
