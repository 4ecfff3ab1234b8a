//! The verbs against an etcd with TLS, client certificates and authentication on: the
//! options reach the store, the password comes from a file or the environment and never
//! shows, and refusals read as an operator would want.

mod util;

use std::process::Stdio;

use util::{assert_code, stderr, Scratch};
use wgfabric_testkit::{run_command, Etcd};

/// The arguments of `apply --no-wait` to `etcd` under the prefix /corp, with its TLS files
/// and `extra`.
fn apply(etcd: &Etcd, extra: &[&str]) -> Vec<String> {
    let tls = etcd.tls().unwrap();
    let mut args: Vec<String> = ["apply", "--no-wait", "--source"].map(String::from).to_vec();
    args.push(format!("etcds://{}/corp", etcd.endpoint()));
    for (flag, path) in [
        ("--etcd-cacert", &tls.ca),
        ("--etcd-cert", &tls.client.cert),
        ("--etcd-key", &tls.client.key),
    ] {
        args.extend([flag.to_owned(), path.display().to_string()]);
    }
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    args
}

fn run(scratch: &Scratch, args: &[String], password: Option<&str>) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = scratch.command(&args);
    if let Some(password) = password {
        command.env("WGFABRIC_ETCD_PASSWORD", password);
    }
    command.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn apply_publishes_over_tls_as_a_user_with_the_password_from_a_file_or_the_environment() {
    let Ok(etcd) = Etcd::start_secure() else { return };
    let scratch = Scratch::with_example();
    std::fs::write(scratch.path("etcd.password"), format!("{}\n", Etcd::PASSWORD)).unwrap();
    let from_file = apply(&etcd, &["--etcd-user", "root", "--etcd-password-file", "etcd.password"]);
    assert_code(&run(&scratch, &from_file, None), 0);
    let keys =
        run_command(etcd.etcdctl().args(["get", "--prefix", "--keys-only", "/corp/desired/"]))
            .unwrap();
    assert!(keys.contains("/corp/desired/relay-fra"), "{keys}");

    let from_environment = apply(&etcd, &["--etcd-user", "root"]);
    assert_code(&run(&scratch, &from_environment, Some(Etcd::PASSWORD)), 0);
    let missing = run(&scratch, &from_environment, None);
    assert_code(&missing, 2);
    assert!(stderr(&missing).contains("--etcd-user root needs a password"), "{}", stderr(&missing));
}

#[test]
fn apply_explains_refusals_without_showing_the_password() {
    let Ok(etcd) = Etcd::start_secure() else { return };
    let scratch = Scratch::with_example();
    let wrong = run(&scratch, &apply(&etcd, &["--etcd-user", "root"]), Some("hunter2"));
    assert_code(&wrong, 2);
    let text = stderr(&wrong);
    assert!(
        text.contains(&format!(
            "etcd at {}: signing in as `root` failed: etcdserver: authentication failed, \
             invalid user ID or password",
            etcd.endpoint()
        )),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");

    let anonymous = run(&scratch, &apply(&etcd, &[]), None);
    assert_code(&anonymous, 2);
    assert!(
        stderr(&anonymous).contains("etcd requires a user name and password"),
        "{}",
        stderr(&anonymous)
    );

    let stranger_ca = etcd.tls().unwrap().stranger_ca.display().to_string();
    let mut args = apply(&etcd, &["--etcd-user", "root"]);
    let ca = args.iter().position(|arg| arg == "--etcd-cacert").unwrap() + 1;
    args[ca].clone_from(&stranger_ca);
    let untrusted = run(&scratch, &args, Some(Etcd::PASSWORD));
    assert_code(&untrusted, 2);
    assert!(
        stderr(&untrusted)
            .contains(&format!("TLS: etcd's certificate is not signed by the CA in {stranger_ca}")),
        "{}",
        stderr(&untrusted)
    );

    let plain = format!("etcd://{}/corp", etcd.endpoint());
    let mismatched = scratch
        .command(&["apply", "--no-wait", "--source", &plain, "--etcd-cacert", "ca.pem"])
        .output()
        .unwrap();
    assert_code(&mismatched, 2);
    assert!(stderr(&mismatched).contains("(use etcds://)"), "{}", stderr(&mismatched));
}
