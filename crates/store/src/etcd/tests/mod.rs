//! The client against a real etcd (skipped where etcd is not installed, outside CI).

use wgfabric_testkit::Etcd;
use zeroize::Zeroizing;

use super::*;

/// How to reach `etcd`: plainly, or with its CA, client certificate and user when it was
/// started secure.
pub(crate) fn security(etcd: &Etcd) -> Security {
    let Some(tls) = etcd.tls() else { return Security::default() };
    let client = ClientCertificate { cert: tls.client.cert.clone(), key: tls.client.key.clone() };
    Security {
        tls: Some(TlsFiles { ca: tls.ca.clone(), client: Some(client) }),
        credentials: Some(Credentials::new(Etcd::USER, Zeroizing::new(Etcd::PASSWORD.into()))),
    }
}

fn client(etcd: &Etcd) -> Client {
    Client::new(&etcd.endpoint(), &security(etcd)).unwrap()
}

#[test]
fn keys_are_written_read_listed_and_deleted() {
    let Ok(etcd) = Etcd::start() else { return };
    let client = client(&etcd);
    assert_eq!(client.get(b"/t/a").unwrap(), None);
    let first = client.put(b"/t/a", b"one").unwrap();
    let second = client.put(b"/t/b", b"\x00binary\xff").unwrap();
    client.put(b"/u/c", b"elsewhere").unwrap();
    assert!(second > first);
    let a = client.get(b"/t/a").unwrap().unwrap();
    assert_eq!((a.value.as_slice(), a.mod_revision), (&b"one"[..], first));

    let range = client.range_prefix(b"/t/").unwrap();
    let keys: Vec<&[u8]> = range.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, [&b"/t/a"[..], b"/t/b"]);
    assert_eq!(range.kvs[1].value, b"\x00binary\xff");
    assert!(range.revision > second);

    assert_eq!(client.delete(b"/t/a").unwrap(), 1);
    assert_eq!(client.delete(b"/t/a").unwrap(), 0);
    assert_eq!(client.get(b"/t/a").unwrap(), None);
}

#[test]
fn watches_resume_from_a_revision_and_report_compaction() {
    let Ok(etcd) = Etcd::start() else { return };
    let client = client(&etcd);
    let start = client.range_prefix(b"/w/").unwrap().revision + 1;
    let mut watch = client.watch(b"/w/", true, start).unwrap();
    assert_eq!(watch.next(Duration::from_secs(5)).unwrap(), Some(WatchMessage::Created));
    assert_eq!(watch.next(Duration::from_millis(200)).unwrap(), None, "nothing yet");

    let put = client.put(b"/w/x", b"1").unwrap();
    client.put(b"/other", b"ignored").unwrap();
    let Some(WatchMessage::Events(events)) = watch.next(Duration::from_secs(5)).unwrap() else {
        panic!("expected events")
    };
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].kv.key.as_slice(), events[0].kv.mod_revision), (&b"/w/x"[..], put));
    assert!(!events[0].deleted);
    drop(watch);

    // Changes made while no watch was open are delivered when watching from the next one.
    client.put(b"/w/y", b"2").unwrap();
    client.delete(b"/w/x").unwrap();
    let mut resumed = client.watch(b"/w/", true, put + 1).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match resumed.next(Duration::from_secs(5)).unwrap() {
            Some(WatchMessage::Events(events)) => seen.extend(events),
            Some(WatchMessage::Created) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((seen[0].kv.key.as_slice(), seen[0].deleted), (&b"/w/y"[..], false));
    assert_eq!((seen[1].kv.key.as_slice(), seen[1].deleted), (&b"/w/x"[..], true));

    // A single key, from a compacted revision.
    let head = client.put(b"/w/y", b"3").unwrap();
    let compact = etcd.etcdctl().args(["compact", &head.to_string()]).output().unwrap();
    assert!(compact.status.success(), "{}", String::from_utf8_lossy(&compact.stderr));
    let mut old = client.watch(b"/w/y", false, put).unwrap();
    let message = loop {
        match old.next(Duration::from_secs(5)).unwrap() {
            Some(WatchMessage::Created) => {}
            other => break other,
        }
    };
    assert_eq!(message, Some(WatchMessage::Compacted { revision: head }));
}

#[test]
fn errors_carry_etcds_message() {
    let Ok(etcd) = Etcd::start() else { return };
    let error = client(&etcd).get(b"").unwrap_err();
    assert!(
        matches!(&error, Error::Server { status: 400, message } if message.contains("key is not provided")),
        "{error:?}"
    );
    let closed = Client::new("127.0.0.1:1", &Security::default()).unwrap().get(b"/x").unwrap_err();
    assert!(matches!(closed, Error::Io(_)), "{closed:?}");
}

#[test]
fn prefix_ends() {
    assert_eq!(prefix_end(b"/a/"), b"/a0");
    assert_eq!(prefix_end(b"a\xff"), b"b");
    assert_eq!(prefix_end(b"\xff\xff"), b"\0");
}

mod fake_server;
mod secure;
