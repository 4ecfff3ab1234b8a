//! Applying a userspace API `set` request and producing the `get` answer.
//!
//! `listen_port` and `fwmark` belong to the sockets, so the caller applies (and reports) them;
//! everything else is the device's.

use std::time::Instant;

use super::{Device, PeerInfo};
use crate::peer::PeerId;
use crate::uapi::{
    AllowedIpChange, DeviceSnapshot, PeerSnapshot, PeerUpdate, PrivateKeyUpdate, SetRequest,
};

impl Device {
    /// Applies a validated `set` request, in the order documented on [`SetRequest`]. It cannot
    /// fail: everything that can be wrong was refused when the request was parsed.
    pub fn apply(&mut self, now: Instant, request: &SetRequest) {
        let had_identity = self.public_key();
        match &request.private_key {
            Some(PrivateKeyUpdate::Set(key)) => self.set_private_key(Some(key.clone())),
            Some(PrivateKeyUpdate::Remove) => self.set_private_key(None),
            None => {}
        }
        if request.replace_peers {
            self.remove_all_peers();
        }
        for update in &request.peers {
            self.apply_peer(now, update);
        }
        self.allowed_ips.optimize();
        if self.public_key().is_some() && self.public_key() != had_identity {
            // Packets queued while there was no key to handshake with (such as the keepalive
            // that turning on a persistent keepalive sends, when `wg setconf` runs before
            // `wg set private-key`) start their handshakes now, not at the next timer.
            let waiting: Vec<_> = self
                .peer_ids()
                .filter(|&id| self.peer(id).is_some_and(|p| !p.staged.is_empty()))
                .collect();
            for id in waiting {
                self.send_staged(now, id);
            }
        }
    }

    fn apply_peer(&mut self, now: Instant, update: &PeerUpdate) {
        let existing = self.peer_by_key(&update.public_key);
        if update.remove {
            if let Some(id) = existing {
                self.remove_peer(id);
            }
            return;
        }
        if update.update_only && existing.is_none() {
            return;
        }
        let Some(id) = existing.or_else(|| self.add_peer(update.public_key)) else {
            // Our own public key: ignored, as the kernel and wireguard-go do.
            return;
        };
        if let Some(psk) = &update.preshared_key {
            self.set_preshared_key(id, psk.clone());
        }
        if let Some(endpoint) = update.endpoint {
            self.set_endpoint(id, endpoint);
        }
        if update.replace_allowed_ips {
            self.clear_allowed_ips(id);
        }
        for change in &update.allowed_ips {
            match *change {
                AllowedIpChange::Add(ip) => self.add_allowed_ip(id, ip),
                AllowedIpChange::Remove(ip) => self.remove_allowed_ip(id, ip),
            }
        }
        if update.successor_of.is_some() {
            self.set_successor_of(id, update.successor_of);
        }
        if update.replace_accept_ips {
            self.clear_accept_ips(id);
        }
        for &ip in &update.accept_ips {
            self.add_accept_ip(id, ip);
        }
        if let Some(interval) = update.persistent_keepalive_interval {
            self.set_persistent_keepalive(now, id, interval);
        }
    }

    /// The device as `get=1` reports it, peers in slot order (creation order, with freed slots
    /// reused). `listen_port` and `fwmark` are left 0 for the caller to fill in.
    pub fn snapshot(&self) -> DeviceSnapshot {
        let mut device = self.snapshot_device();
        let mut cursor = Some(PeerCursor::default());
        while let Some(from) = cursor {
            cursor = self.snapshot_peers(from, usize::MAX, &mut device.peers);
        }
        device
    }

    /// The device's own part of [`Device::snapshot`], without peers.
    pub fn snapshot_device(&self) -> DeviceSnapshot {
        DeviceSnapshot { private_key: self.private_key().cloned(), ..DeviceSnapshot::default() }
    }

    /// Appends up to `max` peers to `out`, from `from` on, in the order of
    /// [`Device::snapshot`]; returns where the next page starts, or `None` after the last peer.
    ///
    /// A caller that reads a large device page by page (taking its lock once per page) sees
    /// each peer as it was when its page was read. A peer removed before its page is not
    /// listed; one added meanwhile is listed if it took a slot after `from`.
    pub fn snapshot_peers(
        &self,
        from: PeerCursor,
        max: usize,
        out: &mut Vec<PeerSnapshot>,
    ) -> Option<PeerCursor> {
        let mut listed = 0;
        for (index, slot) in self.slots.iter().enumerate().skip(from.0) {
            if listed == max {
                return Some(PeerCursor(index));
            }
            if slot.peer.is_none() {
                continue;
            }
            // Slots are numbered by u32 when created (see `add_peer`).
            let id = PeerId { slot: index as u32, generation: slot.generation };
            out.extend(self.peer_info(id).map(PeerSnapshot::from));
            listed += 1;
        }
        None
    }
}

impl From<PeerInfo> for PeerSnapshot {
    fn from(info: PeerInfo) -> Self {
        Self {
            public_key: info.public_key,
            preshared_key: (!info.preshared_key.is_zero()).then_some(info.preshared_key),
            endpoint: info.endpoint.map(|e| e.addr),
            last_handshake_time: info.last_handshake,
            rx_bytes: info.stats.rx_bytes,
            tx_bytes: info.stats.tx_bytes,
            persistent_keepalive_interval: info.persistent_keepalive,
            allowed_ips: info.allowed_ips,
            protocol_version: crate::constants::PROTOCOL_VERSION,
            successor_of: info.successor_of,
            accept_ips: info.accept_ips,
        }
    }
}

/// Where a paged read of the peers ([`Device::snapshot_peers`]) resumes. The default starts
/// at the first peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerCursor(usize);

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::PeerCursor;
    use crate::keys::PrivateKey;
    use crate::uapi::{format_get, parse_get, parse_set, write_get_device, write_get_peer};
    use crate::Device;

    fn device() -> (Device, Instant) {
        let now = Instant::now();
        (Device::new([0; 32], now, Duration::from_secs(1_700_000_000)), now)
    }

    fn hex(seed: u8) -> String {
        PrivateKey::from_bytes([seed; 32]).to_hex_secret()
    }

    fn pub_hex(seed: u8) -> String {
        PrivateKey::from_bytes([seed; 32]).public_key().to_hex()
    }

    #[test]
    fn set_then_get_round_trips() {
        let (mut dev, now) = device();
        let request = format!(
            "private_key={}\nreplace_peers=true\npublic_key={}\npreshared_key={}\nendpoint=192.0.2.7:51820\npersistent_keepalive_interval=0\nreplace_allowed_ips=true\nallowed_ip=10.0.0.2/32\nallowed_ip=fd00::2/128\npublic_key={}\nallowed_ip=10.1.0.0/16\n",
            hex(1),
            pub_hex(2),
            "07".repeat(32),
            pub_hex(3)
        );
        dev.apply(now, &parse_set(&request).unwrap());
        let shown = format_get(&dev.snapshot());
        let back = parse_get(&shown).unwrap();
        assert_eq!(back.private_key, Some(PrivateKey::from_bytes([1; 32])));
        assert_eq!(back.peers.len(), 2);
        assert_eq!(back.peers[0].public_key.to_hex(), pub_hex(2));
        assert_eq!(back.peers[0].endpoint, Some("192.0.2.7:51820".parse().unwrap()));
        assert!(back.peers[0].preshared_key.is_some());
        let ips: Vec<String> = back.peers[0].allowed_ips.iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["10.0.0.2/32", "fd00::2/128"]);
        assert!(back.peers[1].preshared_key.is_none());
    }

    #[test]
    fn a_key_set_after_the_peers_starts_their_handshakes_at_once() {
        let (mut dev, now) = device();
        let peers = format!(
            "public_key={}\nendpoint=192.0.2.9:51820\npersistent_keepalive_interval=25\nallowed_ip=10.0.0.2/32\n",
            pub_hex(2)
        );
        dev.apply(now, &parse_set(&peers).unwrap());
        assert!(dev.poll_transmit().is_none(), "no key, no handshake");
        dev.apply(now, &parse_set(&format!("private_key={}\n", hex(1))).unwrap());
        let initiation = dev.poll_transmit().expect("an initiation goes out at once");
        assert_eq!(initiation.datagram.len(), crate::wire::INITIATION_LEN);
    }

    #[test]
    fn remove_update_only_and_own_key() {
        let (mut dev, now) = device();
        let setup =
            format!("private_key={}\npublic_key={}\nallowed_ip=10.0.0.2/32\n", hex(1), pub_hex(2));
        dev.apply(now, &parse_set(&setup).unwrap());
        // update_only does not create; our own key is ignored; remove deletes.
        let change = format!(
            "public_key={}\nupdate_only=true\nallowed_ip=10.9.0.0/16\npublic_key={}\nallowed_ip=10.8.0.0/16\npublic_key={}\nremove=true\n",
            pub_hex(4),
            pub_hex(1),
            pub_hex(2)
        );
        dev.apply(now, &parse_set(&change).unwrap());
        assert_eq!(dev.peer_count(), 0);
        assert_eq!(dev.route("10.9.0.1".parse().unwrap()), None);
    }

    #[test]
    fn allowed_ip_removal_and_move() {
        let (mut dev, now) = device();
        let setup = format!(
            "public_key={}\nallowed_ip=10.0.0.0/24\nallowed_ip=10.0.1.0/24\npublic_key={}\nallowed_ip=10.0.1.0/24\n",
            pub_hex(2),
            pub_hex(3)
        );
        dev.apply(now, &parse_set(&setup).unwrap());
        let snap = dev.snapshot();
        assert_eq!(snap.peers[0].allowed_ips.len(), 1, "10.0.1.0/24 moved to the second peer");
        let remove = format!("public_key={}\nallowed_ip=-10.0.0.0/24\n", pub_hex(2));
        dev.apply(now, &parse_set(&remove).unwrap());
        assert!(dev.snapshot().peers[0].allowed_ips.is_empty());
    }

    #[test]
    fn pages_of_peers_add_up_to_the_snapshot() {
        let (mut dev, now) = device();
        let mut request = format!("private_key={}\n", hex(1));
        for seed in 2..=8 {
            request += &format!("public_key={}\nallowed_ip=10.0.0.{seed}/32\n", pub_hex(seed));
        }
        dev.apply(now, &parse_set(&request).unwrap());
        // A hole in the slots: the third peer goes.
        dev.apply(now, &parse_set(&format!("public_key={}\nremove=true\n", pub_hex(4))).unwrap());
        let whole = dev.snapshot();
        assert_eq!(whole.peers.len(), 6);

        let mut paged = dev.snapshot_device();
        let mut cursor = Some(PeerCursor::default());
        let mut pages = 0;
        while let Some(from) = cursor {
            let before = paged.peers.len();
            cursor = dev.snapshot_peers(from, 2, &mut paged.peers);
            assert!(paged.peers.len() - before <= 2, "a page holds at most `max` peers");
            pages += 1;
        }
        assert_eq!(paged, whole);
        assert_eq!(pages, 3, "six peers in pages of two");

        let mut text = String::new();
        write_get_device(&mut text, &paged);
        for peer in &paged.peers {
            write_get_peer(&mut text, peer);
        }
        text += "errno=0\n\n";
        assert_eq!(text, format_get(&whole));
    }
}
