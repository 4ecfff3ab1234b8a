//! The topology as a picture: Graphviz DOT and Mermaid.
//!
//! One box per network; relays are boxes, other hosts ellipses (rounded in Mermaid). A spoke's
//! link to its active relay is solid and labelled `primary`, links to the other relays are
//! dashed; routed subnets hang off their host as notes with a dotted link.

use std::fmt::Write as _;

use crate::config::HostConfig;
use crate::fabric::Fabric;
use crate::inventory::Role;

/// Graph output syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum GraphFormat {
    /// Graphviz DOT (`dot -Tsvg`).
    Dot,
    /// Mermaid flowchart (renders in GitHub and GitLab Markdown).
    Mermaid,
}

/// A peering drawn once, from the side that owns its meaning.
struct Link<'a> {
    from: &'a str,
    to: &'a str,
    primary: bool,
    standby: bool,
}

fn links(configs: &[HostConfig]) -> Vec<Link<'_>> {
    let mut links = Vec::new();
    for config in configs {
        for peer in &config.peers {
            let to_relay = config.role != Role::Relay && peer.role == Role::Relay;
            let same_kind = config.role == peer.role && config.host < peer.name;
            if to_relay || same_kind {
                let active = config.failover.as_ref().map(|f| &f.active);
                links.push(Link {
                    from: config.host.as_str(),
                    to: peer.name.as_str(),
                    primary: to_relay && active == Some(&peer.name),
                    standby: to_relay && active != Some(&peer.name),
                });
            }
        }
    }
    links
}

fn label(fabric: &Fabric, config: &HostConfig) -> String {
    let addresses: Vec<String> = fabric
        .addresses(config.host.as_str())
        .map(|a| a.addresses().map(|addr| addr.to_string()).collect())
        .unwrap_or_default();
    format!("{} ({})", config.host, addresses.join(", "))
}

/// The fabric's topology in `format`.
pub fn graph(fabric: &Fabric, configs: &[HostConfig], format: GraphFormat) -> String {
    match format {
        GraphFormat::Dot => dot(fabric, configs),
        GraphFormat::Mermaid => mermaid(fabric, configs),
    }
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn dot(fabric: &Fabric, configs: &[HostConfig]) -> String {
    let mut out =
        String::from("// wgfabric topology, generated from fabric.toml.\ngraph fabric {\n");
    out.push_str(
        "  graph [rankdir=LR, fontname=\"sans-serif\"];\n  node [fontname=\"sans-serif\"];\n",
    );
    for network in fabric.inventory().networks.values() {
        let prefixes: Vec<String> = network.overlays().map(|c| c.to_string()).collect();
        let _ = writeln!(out, "  subgraph {} {{", quoted(&format!("cluster_{}", network.name)));
        let _ = writeln!(
            out,
            "    label={};",
            quoted(&format!("{} {}", network.name, prefixes.join(" ")))
        );
        for config in configs.iter().filter(|c| c.network == network.name) {
            let shape = if config.role == Role::Relay { "box" } else { "ellipse" };
            let _ = writeln!(
                out,
                "    {} [shape={shape}, label={}];",
                quoted(config.host.as_str()),
                quoted(&label(fabric, config))
            );
            for route in &config.routes {
                let id = quoted(&format!("route {route}"));
                let _ =
                    writeln!(out, "    {id} [shape=note, label={}];", quoted(&route.to_string()));
                let _ =
                    writeln!(out, "    {} -- {id} [style=dotted];", quoted(config.host.as_str()));
            }
        }
        out.push_str("  }\n");
    }
    for link in links(configs) {
        let style = match (link.primary, link.standby) {
            (true, _) => " [label=\"primary\"]",
            (_, true) => " [style=dashed]",
            _ => "",
        };
        let _ = writeln!(out, "  {} -- {}{style};", quoted(link.from), quoted(link.to));
    }
    out.push_str("}\n");
    out
}

fn mermaid(fabric: &Fabric, configs: &[HostConfig]) -> String {
    // Mermaid ids cannot hold every name character; number the hosts instead.
    let id = |name: &str| {
        configs
            .binary_search_by(|c| c.host.as_str().cmp(name))
            .map_or_else(|_| "unknown".into(), |i| format!("h{i}"))
    };
    let text = |s: &str| s.replace('"', "#quot;");
    let mut out = String::from("%% wgfabric topology, generated from fabric.toml.\nflowchart LR\n");
    let mut route_count = 0;
    for (index, network) in fabric.inventory().networks.values().enumerate() {
        let prefixes: Vec<String> = network.overlays().map(|c| c.to_string()).collect();
        let _ = writeln!(
            out,
            "  subgraph net{index}[\"{}\"]",
            text(&format!("{} {}", network.name, prefixes.join(" ")))
        );
        for config in configs.iter().filter(|c| c.network == network.name) {
            let node = id(config.host.as_str());
            let label = text(&label(fabric, config));
            if config.role == Role::Relay {
                let _ = writeln!(out, "    {node}[\"{label}\"]");
            } else {
                let _ = writeln!(out, "    {node}(\"{label}\")");
            }
            for route in &config.routes {
                let _ = writeln!(out, "    r{route_count}[/\"{route}\"/]");
                let _ = writeln!(out, "    {node} -.- r{route_count}");
                route_count += 1;
            }
        }
        out.push_str("  end\n");
    }
    for link in links(configs) {
        let (from, to) = (id(link.from), id(link.to));
        let arrow = match (link.primary, link.standby) {
            (true, _) => "-- primary ---",
            (_, true) => "-.-",
            _ => "---",
        };
        let _ = writeln!(out, "  {from} {arrow} {to}");
    }
    out
}
