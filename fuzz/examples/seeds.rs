//! Writes the generated part of the seed corpus (`fuzz/corpus/`): the datagram target's real
//! protocol messages (which depend on the target's deterministic setup), TUN superframes, an
//! audit log and rendered configurations.
//!
//! ```text
//! cd fuzz && cargo +nightly run --example seeds [-- DIR]     # DIR defaults to corpus/
//! ```

use std::path::{Path, PathBuf};

use wgfabric_audit::{Action, Audit, Entry, Fingerprint, Timestamp};
use wgfabric_model::render::{setconf, wg_quick};
use wgfabric_model::{Fabric, Inventory, Lock};
use wgfabric_fuzz::datagram::{self, b_again, c_device, delivery, Setup};
use wgfabric_proto::keys::PrivateKey;
use wgfabric_proto::wire::{DATA_HEADER_LEN, INITIATION_LEN};
use wgfabric_proto::{Encapsulated, Endpoint};
use wgfabric_testkit::packet::ipv4;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).expect("creating the corpus directory");
    std::fs::write(dir.join(name), bytes).expect("writing a seed");
}

fn with(selector: u8, body: &[u8]) -> Vec<u8> {
    [&[selector][..], body].concat()
}

/// A record of a sequence (datagram kind 7).
fn record(selector: u8, body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(body.len()).expect("a short record");
    [&[selector][..], &len.to_le_bytes(), body].concat()
}

fn datagram_seeds(dir: &Path) {
    let t = "datagram";
    let setup = Setup::new();
    let now = delivery();
    let a_addr: std::net::SocketAddr = datagram::A_ADDR.parse().expect("an address");

    // A fresh initiation from b (a later timestamp than the setup's handshake).
    let mut b = b_again(9);
    let packet = ipv4([10, 0, 0, 2], [10, 0, 0, 1], 12);
    let mut buf = vec![0u8; 200];
    buf[DATA_HEADER_LEN..DATA_HEADER_LEN + packet.len()].copy_from_slice(&packet);
    assert_eq!(b.encapsulate(now, &mut buf, packet.len()), Encapsulated::Queued);
    let initiation = b.poll_transmit().expect("b initiates").datagram;
    assert_eq!(initiation.len(), INITIATION_LEN);
    write(dir, t, "initiation-raw", &with(0, &initiation));
    write(dir, t, "initiation", &with(1, &initiation[4..]));
    write(dir, t, "initiation-under-load", &with(0x08 | 1, &initiation[4..]));
    write(dir, t, "initiation-with-cookie", &with(0x18 | 1, &initiation[4..]));
    write(dir, t, "initiation-roaming", &with(0x20 | 1, &initiation[4..]));

    // c answers a's initiation: a response, and a cookie reply when c is under load.
    let mut c = c_device();
    let mut to_c = setup.initiation_to_c.clone();
    let _ = c.decapsulate(now, Endpoint::new(a_addr), &mut to_c, false);
    let response = c.poll_transmit().expect("c responds").datagram;
    write(dir, t, "response", &with(2, &response[4..]));
    write(dir, t, "response-after-retry", &with(0x40 | 2, &response[4..]));
    let mut c = c_device();
    let mut to_c = setup.initiation_to_c.clone();
    let _ = c.decapsulate(now, Endpoint::new(a_addr), &mut to_c, true);
    let cookie = c.poll_transmit().expect("c sends a cookie").datagram;
    write(dir, t, "cookie-reply", &with(3, &cookie[4..]));

    // Transport data from b on the live session: a packet, a keepalive, and the same sealed
    // by the target from the plaintext.
    let data = setup.seal_from_b(&packet).expect("sealing");
    write(dir, t, "data", &with(4, &data[4..]));
    write(dir, t, "data-roaming", &with(0x20 | 4, &data[4..]));
    write(dir, t, "data-after-rekey", &with(0x80 | 4, &data[4..]));
    let keepalive = setup.seal_from_b(&[]).expect("sealing");
    write(dir, t, "keepalive", &with(0, &keepalive));
    write(dir, t, "sealed-ipv4", &with(5, &packet));
    let mut v6 = vec![0u8; 48];
    v6[0] = 0x60;
    v6[4..6].copy_from_slice(&8u16.to_be_bytes());
    v6[6] = 17;
    v6[7] = 64;
    v6[8..24].copy_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().expect("v6").octets());
    v6[24..40].copy_from_slice(&"fd00::1".parse::<std::net::Ipv6Addr>().expect("v6").octets());
    write(dir, t, "sealed-ipv6", &with(5, &v6));
    let spoofed = ipv4([10, 0, 0, 3], [10, 0, 0, 1], 4);
    write(dir, t, "sealed-spoofed-source", &with(5, &spoofed));
    write(dir, t, "sealed-reordered", &with(6, &[packet.clone(), packet.clone()].concat()));

    // Sequences: the cookie then an initiation; data then the session expiring.
    let sequence = [
        record(0x08 | 1, &initiation[4..]),
        record(0x18 | 1, &initiation[4..]),
        record(4, &data[4..]),
        record(0xc0 | 5, &packet),
    ]
    .concat();
    write(dir, t, "sequence", &with(7, &sequence));
}

fn offload_seeds(dir: &Path) {
    let t = "offload";
    // (mode, virtio-net header fields, packet)
    let tcp4 = {
        let payload = 1200;
        let total = 20 + 20 + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = 6;
        p[12..20].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&443u16.to_be_bytes());
        p[24..28].copy_from_slice(&1000u32.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = 0x18; // ACK | PSH
        p[34..36].copy_from_slice(&512u16.to_be_bytes());
        for (i, b) in p[40..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        p
    };
    let tcp6 = {
        let payload = 900;
        let mut p = vec![0u8; 40 + 20 + payload];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
        p[6] = 6;
        p[7] = 64;
        p[8] = 0xfd;
        p[23] = 1;
        p[24] = 0xfd;
        p[39] = 2;
        p[40..42].copy_from_slice(&40000u16.to_be_bytes());
        p[42..44].copy_from_slice(&22u16.to_be_bytes());
        p[52] = 5 << 4;
        p[53] = 0x10; // ACK
        p
    };
    let udp4 = {
        let payload = 300 * 3;
        let total = 20 + 8 + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..20].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        p[20..22].copy_from_slice(&5000u16.to_be_bytes());
        p[22..24].copy_from_slice(&53u16.to_be_bytes());
        p[24..26].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        p
    };
    let frame = |gso_type: u8,
                 hdr_len: u16,
                 gso_size: u16,
                 csum_start: u16,
                 csum_offset: u16,
                 packet: &[u8]| {
        let mut f = vec![1u8, gso_type];
        for field in [hdr_len, gso_size, csum_start, csum_offset] {
            f.extend_from_slice(&field.to_ne_bytes());
        }
        f.extend_from_slice(packet);
        f
    };
    write(dir, t, "tcp4-superframe", &with(0, &frame(1, 40, 500, 20, 16, &tcp4)));
    write(dir, t, "tcp6-superframe", &with(0, &frame(4, 60, 400, 40, 16, &tcp6)));
    write(dir, t, "udp4-superframe", &with(2, &frame(5, 28, 300, 20, 6, &udp4)));
    write(dir, t, "single-packet", &with(0, &frame(0, 0, 0, 20, 16, &tcp4[..200])));
    // A batch: two TCP segments of one flow, then one of another.
    let mut batch = Vec::new();
    let mut segment = tcp4[..40 + 100].to_vec();
    segment[2..4].copy_from_slice(&140u16.to_be_bytes());
    segment[33] = 0x10;
    let mut next = segment.clone();
    next[4..6].copy_from_slice(&1u16.to_be_bytes());
    next[24..28].copy_from_slice(&1100u32.to_be_bytes());
    let mut other = segment.clone();
    other[20..22].copy_from_slice(&40001u16.to_be_bytes());
    for p in [&segment, &next, &other] {
        batch.extend_from_slice(&(p.len() as u16).to_le_bytes());
        batch.extend_from_slice(p);
    }
    write(dir, t, "batch", &with(1, &batch));
}

fn audit_seeds(dir: &Path) {
    let scratch = std::env::temp_dir().join(format!("wgfabric-fuzz-seeds-{}", std::process::id()));
    let path = scratch.join("audit.jsonl");
    let mut audit = Audit::open(&path).expect("opening a scratch audit log");
    let time = Timestamp::from_unix(1_780_000_000);
    let key = PrivateKey::from_bytes([3; 32]).public_key();
    let rotated = PrivateKey::from_bytes([4; 32]).public_key();
    let entries = [
        Entry::new(time, "ana", Action::KeyGenerated, "relay-fra")
            .after(Fingerprint::of_public_key(&key)),
        Entry::new(time, "ana", Action::ConfigWritten, "relay-fra")
            .after(Fingerprint::of_contents(b"[Interface]\n"))
            .detail("rendered/relay-fra/wg0.conf"),
        Entry::new(time, "ci", Action::KeyRotated, "relay-fra")
            .before(Fingerprint::of_public_key(&key))
            .after(Fingerprint::of_public_key(&rotated)),
        Entry::new(time, "agent@relay-fra", Action::PeerRemoved, "laptop-ana")
            .before(Fingerprint::of_public_key(&key)),
    ];
    for entry in entries {
        audit.append(entry).expect("appending");
    }
    let log = std::fs::read(&path).expect("reading the log back");
    std::fs::remove_dir_all(&scratch).expect("removing the scratch log");
    for (name, tamper) in
        [("log-edit", 0u8), ("log-remove", 1 | 4), ("log-swap", 2 | 8), ("log-insert", 3)]
    {
        write(dir, "audit_verify", name, &with(tamper, &log));
    }
}

fn rendered_seeds(dir: &Path, repo: &Path) {
    let text = std::fs::read_to_string(repo.join("examples/fabric.toml")).expect("the example");
    let lock = std::fs::read_to_string(repo.join("examples/fabric.lock")).expect("its lock");
    let inventory = Inventory::parse(Path::new("fabric.toml"), &text).expect("a valid example");
    let lock = Lock::parse(Path::new("fabric.lock"), &lock).expect("a valid lock");
    let lock = lock.update(&inventory).expect("addresses");
    let fabric = Fabric::new(inventory, lock).expect("a fabric");
    for host in ["relay-fra", "laptop-ben", "router-aws"] {
        let config = fabric.host_config(host).expect("a host of the example");
        let key = PrivateKey::from_bytes([7; 32]);
        write(dir, "wg_ini", &format!("{host}.conf"), wg_quick(&config, Some(&key)).as_bytes());
        write(dir, "wg_ini", &format!("{host}.setconf"), setconf(&config, None).as_bytes());
    }
}

fn main() {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let repo = fuzz.parent().expect("fuzz/ is in the repository").to_owned();
    let dir = std::env::args().nth(1).map_or_else(|| fuzz.join("corpus"), PathBuf::from);
    datagram_seeds(&dir);
    offload_seeds(&dir);
    audit_seeds(&dir);
    rendered_seeds(&dir, &repo);
    println!("seeds written to {}", dir.display());
}
