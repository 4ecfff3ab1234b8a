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
    format_status, write_get_device, write_get_peer, SetParser, SetRequest, UapiError, EINVAL,
    EPROTO,
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
        match answer_next(&mut reader, &mut writer, control) {
            Ok(true) => writer.flush()?,
            Ok(false) => return Ok(()),
            Err(Framing::Io(error)) => return Err(error),
            Err(Framing::Broken(error)) => {
                tracing::warn!(%error, "closing a userspace API connection");
                if error.errno() != 0 {
                    writer.write_all(format_status(Some(&error)).as_bytes())?;
                    writer.flush()?;
                }
                return Ok(());
            }
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

/// Reads one request and writes its answer; `false` at end of input.
fn answer_next<C: Control + ?Sized>(
    reader: &mut impl BufRead,
    writer: &mut impl Write,
    control: &C,
) -> Result<bool, Framing> {
    let Some(operation) = read_line(reader)? else {
        return Ok(false);
    };
    match operation.as_str() {
        "get=1" => match read_line(reader)? {
            Some(blank) if blank.is_empty() => {
                write_get(writer, control)?;
                Ok(true)
            }
            _ => Err(broken(EINVAL, "get=1 must be followed by a blank line")),
        },
        "set=1" => {
            let parsed = read_set_request(reader)?;
            writer.write_all(format_status(set(control, parsed).err().as_ref()).as_bytes())?;
            Ok(true)
        }
        _ => {
            let key: String = operation.split('=').next().unwrap_or("").chars().take(32).collect();
            Err(broken(0, format!("unknown operation {key:?}")))
        }
    }
}

/// Writes the answer to `get=1` a page at a time, as the device hands the pages out.
fn write_get<C: Control + ?Sized>(writer: &mut impl Write, control: &C) -> io::Result<()> {
    let (mut text, mut first) = (String::new(), true);
    control.get(&mut |page| {
        if std::mem::take(&mut first) {
            write_get_device(&mut text, page);
        }
        for peer in &page.peers {
            write_get_peer(&mut text, peer);
        }
        writer.write_all(text.as_bytes())?;
        text.clear();
        Ok(())
    })?;
    writer.write_all(format_status(None).as_bytes())
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
    use wgfabric_proto::uapi::{
        format_get, parse_get, DeviceSnapshot, PeerSnapshot, SetRequest, EADDRINUSE,
    };

    /// Records what was set; refuses port 1 as if it were in use.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<SetRequest>>);

    impl Control for Recorder {
        fn get(&self, page: &mut dyn FnMut(&DeviceSnapshot) -> io::Result<()>) -> io::Result<()> {
            let port = self.0.lock().unwrap().iter().rev().find_map(|r| r.listen_port);
            page(&DeviceSnapshot { listen_port: port.unwrap_or(0), ..DeviceSnapshot::default() })
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

    /// A device of seven peers that hands them out three at a time, counting the pages.
    #[derive(Default)]
    struct Paged(std::sync::atomic::AtomicUsize);

    impl Paged {
        fn whole() -> DeviceSnapshot {
            let peers = (1..=7u8)
                .map(|i| {
                    let key = wgfabric_proto::keys::PrivateKey::from_bytes([i; 32]).public_key();
                    PeerSnapshot { rx_bytes: i.into(), ..PeerSnapshot::new(key) }
                })
                .collect();
            DeviceSnapshot { listen_port: 51820, fwmark: 7, peers, ..DeviceSnapshot::default() }
        }
    }

    impl Control for Paged {
        fn get(&self, page: &mut dyn FnMut(&DeviceSnapshot) -> io::Result<()>) -> io::Result<()> {
            let whole = Self::whole();
            let mut first = DeviceSnapshot { peers: Vec::new(), ..whole.clone() };
            for peers in whole.peers.chunks(3) {
                first.peers = peers.to_vec();
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                page(&first)?;
                first = DeviceSnapshot::default();
            }
            Ok(())
        }

        fn set(&self, _: SetRequest) -> Result<(), UapiError> {
            Ok(())
        }
    }

    #[test]
    fn a_get_answer_is_written_page_by_page_as_one_text() {
        let control = Paged::default();
        let mut output = Vec::new();
        serve(&b"get=1\n\n"[..], &mut output, &control).unwrap();
        assert_eq!(String::from_utf8(output).unwrap(), format_get(&Paged::whole()));
        assert_eq!(control.0.load(std::sync::atomic::Ordering::Relaxed), 3);
        assert_eq!(control.snapshot(), Paged::whole());
    }

    #[test]
    fn a_client_that_stops_reading_ends_the_walk() {
        let control = Paged::default();
        // Room for the first page (3 of 7 peers) but not the second.
        let mut room = vec![0u8; format_get(&Paged::whole()).len() / 2];
        let error = serve(&b"get=1\n\n"[..], &mut room[..], &control).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WriteZero);
        let pages = control.0.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(pages, 2, "the second page failed to write and no third was read");
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
