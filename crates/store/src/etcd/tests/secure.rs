//! The client against an etcd with TLS, client certificates and authentication on.

use std::time::Duration;

use wgfabric_testkit::Etcd;
use zeroize::Zeroizing;

use super::{client, security};
use crate::etcd::{
    Client, ClientCertificate, Credentials, Error, Security, TlsFiles, WatchMessage,
};

/// `etcd`'s security with `change` applied.
fn altered(etcd: &Etcd, change: impl FnOnce(&mut Security)) -> Client {
    let mut security = security(etcd);
    change(&mut security);
    Client::new(&etcd.endpoint(), &security).unwrap()
}

fn tls(security: &mut Security) -> &mut TlsFiles {
    security.tls.as_mut().unwrap()
}

#[test]
fn keys_and_watches_work_over_tls_with_a_user() {
    let Ok(etcd) = Etcd::start_secure() else { return };
    let client = client(&etcd);
    assert!(client.is_tls());
    let start = client.put(b"/s/a", b"one").unwrap() + 1;
    assert_eq!(client.get(b"/s/a").unwrap().unwrap().value, b"one");
    let mut watch = client.watch(b"/s/", true, start).unwrap();
    assert_eq!(watch.next(Duration::from_secs(5)).unwrap(), Some(WatchMessage::Created));
    let put = client.put(b"/s/b", b"two").unwrap();
    let Some(WatchMessage::Events(events)) = watch.next(Duration::from_secs(5)).unwrap() else {
        panic!("expected events")
    };
    assert_eq!((events[0].kv.key.as_slice(), events[0].kv.mod_revision), (&b"/s/b"[..], put));
    assert_eq!(client.range_prefix(b"/s/").unwrap().kvs.len(), 2);
}

#[test]
fn a_server_certificate_from_another_ca_is_refused() {
    let Ok(etcd) = Etcd::start_secure() else { return };
    let stranger_ca = etcd.tls().unwrap().stranger_ca.clone();
    let client = altered(&etcd, |security| tls(security).ca = stranger_ca.clone());
    let error = client.get(b"/x").unwrap_err();
    let expected =
        format!("TLS: etcd's certificate is not signed by the CA in {}", stranger_ca.display());
    assert_eq!(error.to_string(), expected, "{error:?}");
    let error = client.watch(b"/x", false, 1).unwrap_err();
    assert_eq!(error.to_string(), expected, "{error:?}");
}

#[test]
fn a_missing_or_unknown_client_certificate_is_refused() {
    let Ok(etcd) = Etcd::start_secure() else { return };
    let none = altered(&etcd, |security| tls(security).client = None).get(b"/x").unwrap_err();
    assert!(matches!(&none, Error::Tls(_)), "{none:?}");
    assert!(none.to_string().ends_with("a client certificate, and none was given"), "{none}");
    let stranger = etcd.tls().unwrap().stranger_client.clone();
    let client = altered(&etcd, |security| {
        let (cert, key) = (stranger.cert.clone(), stranger.key.clone());
        tls(security).client = Some(ClientCertificate { cert, key });
    });
    let refused = client.get(b"/x").unwrap_err();
    assert!(matches!(&refused, Error::Tls(_)), "{refused:?}");
    let expected = format!(
        "the client certificate in {} (is it signed by a CA etcd trusts?)",
        stranger.cert.display()
    );
    assert!(refused.to_string().ends_with(&expected), "{refused}");
}

#[test]
fn a_wrong_password_or_none_is_refused() {
    let Ok(etcd) = Etcd::start_secure() else { return };
    let wrong = altered(&etcd, |security| {
        security.credentials = Some(Credentials::new(Etcd::USER, Zeroizing::new("wrong".into())));
    });
    let error = wrong.get(b"/x").unwrap_err();
    assert!(
        matches!(&error, Error::Authentication { user, .. } if user == Etcd::USER),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "signing in as `root` failed: etcdserver: authentication failed, invalid user ID or password"
    );
    assert!(!format!("{error:?}{wrong:?}").contains("wrong"), "the password stays out of messages");
    assert_eq!(wrong.watch(b"/x", false, 1).unwrap_err().to_string(), error.to_string());

    let anonymous = altered(&etcd, |security| security.credentials = None);
    let error = anonymous.get(b"/x").unwrap_err();
    assert_eq!(
        error.to_string(),
        "etcd requires a user name and password (etcdserver: user name is empty)"
    );
    let error = anonymous.watch(b"/x", false, 1).unwrap_err();
    assert!(error.to_string().contains("etcd requires a user name and password"), "{error}");
}

#[test]
fn a_refused_token_is_renewed() {
    let Ok(etcd) = Etcd::start_secure() else { return };
    let client = client(&etcd);
    client.put(b"/r/a", b"before").unwrap();
    let first = client.token.current().unwrap();
    etcd.forget_tokens();
    assert_eq!(client.get(b"/r/a").unwrap().unwrap().value, b"before");
    let second = client.token.current().unwrap();
    assert_ne!(first.as_str(), second.as_str(), "signed in again");

    // A watch opened with a forgotten token signs in again too.
    etcd.forget_tokens();
    let mut watch = client.watch(b"/r/", true, 1).unwrap();
    assert_eq!(watch.next(Duration::from_secs(5)).unwrap(), Some(WatchMessage::Created));
    assert_ne!(client.token.current().unwrap().as_str(), second.as_str());
}
