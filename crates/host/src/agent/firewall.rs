//! The host's `table inet wgfabric`: loaded when the desired state's firewall changes,
//! removed when it has none, and left as it was when loading fails, so a bad policy never
//! takes the last good table away.

use serde_json::Value;

use crate::nftables;
use wgfabric_audit::note::Note;
use wgfabric_audit::Action;
use wgfabric_model::fingerprint::Fingerprint;
use wgfabric_model::policy::nft::Table;
use wgfabric_model::policy::Firewall;

/// What the agent loaded last.
#[derive(Debug, Default)]
pub(crate) struct Firewalls {
    /// The batch in force, if the agent loaded one.
    loaded: Option<Value>,
    /// Why the wanted table could not be loaded, while that lasts.
    pub(crate) error: Option<String>,
}

impl Firewalls {
    /// Brings the kernel's table to `wanted` on `interface`; an audit note when it changed.
    pub(crate) fn sync(
        &mut self,
        host: &str,
        wanted: Option<&Firewall>,
        interface: &str,
    ) -> Option<Note> {
        let batch = wanted.map(|firewall| {
            let mut firewall = firewall.clone();
            // The interface this agent manages, as for the rest of the configuration.
            firewall.interface = interface.to_owned();
            Table::of(&firewall).to_json()
        });
        if batch == self.loaded {
            // Loaded, unless someone flushed the ruleset since: then load it again.
            if self.loaded.is_none() || nftables::exists().unwrap_or(true) {
                return None;
            }
            tracing::warn!(
                "the firewall table inet wgfabric is gone from the kernel; loading it again"
            );
            self.loaded = None;
        }
        let result = match &batch {
            Some(batch) => nftables::load(batch),
            None => nftables::remove(),
        };
        match result {
            Ok(()) => {
                let detail = match (&batch, wanted) {
                    (Some(batch), Some(firewall)) => {
                        let fingerprint = Fingerprint::of_contents(batch.to_string().as_bytes());
                        let hex = fingerprint.as_str();
                        let rules = |chain: &Option<Vec<_>>| chain.as_ref().map_or(0, Vec::len);
                        tracing::info!(table = %hex, "firewall loaded: table inet wgfabric");
                        format!(
                            "table inet wgfabric {hex}: {} input and {} forward rules{}",
                            rules(&firewall.input),
                            rules(&firewall.forward),
                            if firewall.strict.is_some() { ", strict underlay input" } else { "" }
                        )
                    }
                    _ => {
                        tracing::info!("firewall removed: the desired state has no policy");
                        "table inet wgfabric removed".to_owned()
                    }
                };
                self.loaded = batch;
                self.error = None;
                Some(Note::new(Action::PolicyApplied, host, detail))
            }
            Err(error) => {
                let error = format!("{error}; the firewall in force stays");
                if self.error.as_ref() != Some(&error) {
                    tracing::error!("cannot load the firewall: {error}");
                }
                self.error = Some(error);
                None
            }
        }
    }
}
