//! One userspace API connection: any number of `get=1` and `set=1` requests, each answered
//! and ended with `errno=N`, until the client closes it.
//!
//! A set request is parsed line by line as it is read, up to its blank line, and only then
//! handed to the device, so a bad line changes nothing; its text is never held whole, so a
//! million peers cost the parsed request, not hundreds of megabytes of text as well. Input that breaks the framing (an unknown
//! operation, a line too long, bytes that are not UTF-8) closes the connection, as
//! wireguard-go does, since the rest of the stream cannot be trusted to line up.

use std::io::{self, BufRead, Read as _, Write};

use wgfabric_proto::uapi::{
    format_get, format_status, SetParser, SetRequest, UapiError, EINVAL, EPROTO,
};

use crate::control::Control;

/// The longest line accepted; real lines are under 200 bytes.
const MAX_LINE: usize = 4096;
/// The largest set request accepted, in bytes of text: room for some four million peers.
const MAX_SET_REQUEST: usize = 1 << 30;

/// Answers requests read from `reader` on `writer` until end of input.
///
/// # Errors
/// Only I/O errors on the connection; protocol errors are answered with an errno instead.
pub(crate) fn serve<C: Control + ?Sized>(
    mut reader: impl BufRead,
    mut writer: impl Write,
    control: &C,
) -> io::Result<()> {
    loop {
        let (answer, keep_open) = match next_answer(&mut reader, control) {
            Ok(Some(answer)) => (answer, true),
            Ok(None) => return Ok(()),
            Err(Framing::Io(error)) => return Err(error),
            Err(Framing::Broken(error)) => {
                tracing::warn!(%error, "closing a userspace API connection");
                match error.errno() {
                    0 => return Ok(()),
                    _ => (format_status(Some(&error)), false),
                }
            }
        };
        writer.write_all(answer.as_bytes())?;
        writer.flush()?;
        if !keep_open {
            return Ok(());
        }
    }
}

/// Why a connection cannot go on.
enum Framing {
    Io(io::Error),
    /// Answer with this errno (or just close if it is 0), then close.
    Broken(UapiError),
}

impl From<io::Error> for Framing {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

fn broken(errno: i32, message: impl Into<String>) -> Framing {
    Framing::Broken(UapiError::new(errno, message))
}

/// Reads one request and computes its answer; `None` at end of input.
fn next_answer<C: Control + ?Sized>(
    reader: &mut impl BufRead,
    control: &C,
) -> Result<Option<String>, Framing> {
    let Some(operation) = read_line(reader)? else {
        return Ok(None);
    };
    match operation.as_str() {
        "get=1" => match read_line(reader)? {
            Some(blank) if blank.is_empty() => Ok(Some(match control.get() {
                Ok(device) => format_get(&device),
                Err(error) => format_status(Some(&error)),
            })),
            _ => Err(broken(EINVAL, "get=1 must be followed by a blank line")),
        },
        "set=1" => {
            let parsed = read_set_request(reader)?;
            Ok(Some(format_status(set(control, parsed).err().as_ref())))
        }
        _ => {
            let key: String = operation.split('=').next().unwrap_or("").chars().take(32).collect();
            Err(broken(0, format!("unknown operation {key:?}")))
        }
    }
}

fn set<C: Control + ?Sized>(
    control: &C,
    parsed: Result<SetRequest, UapiError>,
) -> Result<(), UapiError> {
    let result = parsed.and_then(|request| {
        let peers = request.peers.len();
        control.set(request).map(|()| peers)
    });
    match result {
        Ok(peers) => {
            tracing::debug!(peers, "applied a configuration change");
            Ok(())
        }
        Err(error) => {
            tracing::warn!(%error, "refused a configuration change; nothing was changed");
            Err(error)
        }
    }
}

/// Reads and parses the lines of a set request up to its blank line (or end of input). After
/// a bad line the rest of the request is read and dropped, so that the answer lines up with
/// it, and the request is the error.
fn read_set_request(reader: &mut impl BufRead) -> Result<Result<SetRequest, UapiError>, Framing> {
    let mut parser = SetParser::new(&interface_index);
    let mut error = None;
    let mut size = 0;
    while let Some(line) = read_line(reader)? {
        if line.is_empty() {
            break;
        }
        size += line.len() + 1;
        if size > MAX_SET_REQUEST {
            return Err(broken(EPROTO, "set request too large"));
        }
        if error.is_none() {
            error = parser.line(&line).err();
        }
    }
    Ok(match error {
        Some(error) => Err(error),
        None => Ok(parser.finish()),
    })
}

/// Reads a line without its newline; `None` at end of input. A last line without a newline
/// counts as a line.
fn read_line(reader: &mut impl BufRead) -> Result<Option<String>, Framing> {
    let mut bytes = Vec::new();
    let read = reader.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', &mut bytes)?;
    if read == 0 {
        return Ok(None);
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    } else if read > MAX_LINE {
        return Err(broken(EPROTO, format!("line longer than {MAX_LINE} bytes")));
    }
    String::from_utf8(bytes).map(Some).map_err(|_| broken(EPROTO, "line is not UTF-8"))
}

/// The index of a named interface, for link-local endpoints like `[fe80::1%eth0]:51820`.
fn interface_index(name: &str) -> Option<u32> {
    if name.is_empty() || name.len() > 15 || name.contains('/') || name.starts_with('.') {
        return None;
    }
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use wgfabric_proto::uapi::{parse_get, DeviceSnapshot, SetRequest, EADDRINUSE};

    /// Records what was set; refuses port 1 as if it were in use.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<SetRequest>>);

    impl Control for Recorder {
        fn get(&self) -> Result<DeviceSnapshot, UapiError> {
            let sets = self.0.lock().unwrap();
            let port = sets.iter().rev().find_map(|r| r.listen_port).unwrap_or(0);
            Ok(DeviceSnapshot { listen_port: port, ..DeviceSnapshot::default() })
        }

        fn set(&self, request: SetRequest) -> Result<(), UapiError> {
            if request.listen_port == Some(1) {
                return Err(UapiError::new(EADDRINUSE, "port 1 is in use"));
            }
            self.0.lock().unwrap().push(request);
            Ok(())
        }
    }

    fn converse(control: &Recorder, input: &[u8]) -> String {
        let mut output = Vec::new();
        serve(input, &mut output, control).unwrap();
        String::from_utf8(output).unwrap()
    }

    #[test]
    fn several_requests_on_one_connection() {
        let control = Recorder::default();
        let answer = converse(&control, b"set=1\nlisten_port=51820\n\nget=1\n\nget=1\n\n");
        assert_eq!(
            answer,
            "errno=0\n\nlisten_port=51820\nerrno=0\n\nlisten_port=51820\nerrno=0\n\n"
        );
        assert_eq!(control.0.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_bad_line_changes_nothing_and_the_connection_goes_on() {
        let control = Recorder::default();
        let answer =
            converse(&control, b"set=1\nlisten_port=2\nfwmark=x\n\nset=1\nbogus\n\nget=1\n\n");
        assert_eq!(answer, "errno=-22\n\nerrno=-71\n\nerrno=0\n\n");
        assert!(control.0.lock().unwrap().is_empty());
    }

    #[test]
    fn device_errors_are_answered() {
        let control = Recorder::default();
        assert_eq!(converse(&control, b"set=1\nlisten_port=1\n\n"), "errno=-98\n\n");
        assert_eq!(parse_get(&converse(&control, b"get=1\n\n")).unwrap().listen_port, 0);
    }

    #[test]
    fn a_set_cut_short_by_end_of_input_is_still_applied() {
        let control = Recorder::default();
        assert_eq!(converse(&control, b"set=1\nlisten_port=7"), "errno=0\n\n");
        assert_eq!(control.0.lock().unwrap()[0].listen_port, Some(7));
    }

    #[test]
    fn broken_framing_closes_the_connection() {
        let control = Recorder::default();
        assert_eq!(converse(&control, b"hello=1\n\nget=1\n\n"), "");
        assert_eq!(converse(&control, b"get=1\nx\n"), "errno=-22\n\n");
        assert_eq!(converse(&control, b"set=1\nfwmark=\xff\n\nget=1\n\n"), "errno=-71\n\n");
        let long = format!("set=1\nfwmark={}\n\nget=1\n\n", "1".repeat(MAX_LINE));
        assert_eq!(converse(&control, long.as_bytes()), "errno=-71\n\n");
        assert_eq!(converse(&control, b""), "");
        assert!(control.0.lock().unwrap().is_empty());
    }

    #[test]
    fn interface_names_cannot_escape_sysfs() {
        assert_eq!(interface_index("lo"), Some(1));
        for bad in ["", "..", "../../etc", "a/b", "no-such-if0"] {
            assert_eq!(interface_index(bad), None, "{bad}");
        }
    }
}
