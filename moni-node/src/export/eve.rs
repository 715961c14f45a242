//! Alerts as Suricata EVE JSON (`OUT/eve.json`): an output format of the
//! node beside the `alerts` Parquet dataset, for tools that read Suricata
//! (Filebeat's Suricata module, EveBox, Kibana). The line is built from the
//! same [`AlertRecord`] the dataset row is.

use analyzers::record::AlertRecord;
use analyzers::vnet::VnetMap;

/// An address as Suricata writes it in EVE: IPv4 dotted, IPv6 with every
/// group in four hex digits and no `::` (`2001:0db8:0000:...`), so that a
/// join on address strings between moni's and Suricata's EVE holds.
fn eve_ip(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => v6
            .segments()
            .iter()
            .map(|g| format!("{g:04x}"))
            .collect::<Vec<_>>()
            .join(":"),
    }
}

/// One alert as an EVE-JSON line (Suricata's `eve.json` alert event), valid
/// against Suricata's own EVE schema (no field it does not know): Filebeat's
/// Suricata module, EveBox and Kibana ingest it unchanged.
///
/// - `flow_id` is the Parquet `flows.flow_id` of the alerting packet's flow
///   (below 2^51, as Suricata's, so JavaScript tools and `jq` keep it exact
///   and alerts join their flow).
/// - `src_ip`/`dest_ip` are always there: the alert's own addresses, or for
///   an alert without a single source or target (a flood's spoofed
///   sources, a sweep's many hosts) the alerting packet's; `alert.source`
///   and `alert.target` say who attacks whom, as Suricata 7 does for rules
///   with `target:`.
/// - `alert.metadata` holds the rule's `metadata` as Suricata writes it (an
///   object of string arrays), plus moni's own keys: `moni_vnet`,
///   `moni_kind`, `moni_start` (first packet of the episode) and
///   `moni_details` (the `alerts.details` JSON).
/// - Addresses are written as Suricata writes them (IPv6 in full).
pub fn alert_eve_json(a: &AlertRecord, vnets: &VnetMap, host: &str, iface: &str) -> String {
    use serde_json::{json, Map, Value};
    let ts = |t: analyzers::Timestamp| {
        let u = t.utc();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+0000",
            u.year, u.month, u.day, u.hour, u.minute, u.second, u.micros
        )
    };
    let proto = match a.protocol {
        6 => "TCP".to_string(),
        17 => "UDP".to_string(),
        1 => "ICMP".to_string(),
        58 => "IPv6-ICMP".to_string(),
        // As Suricata names them.
        47 => "GRE".to_string(),
        50 => "ESP".to_string(),
        // An IPv6 fragment's protocol is its Fragment header's.
        44 => "IPv6-Frag".to_string(),
        132 => "SCTP".to_string(),
        p => p.to_string(),
    };
    let mut details = serde_json::from_str::<Value>(&a.details).unwrap_or(Value::Null);
    // Top-level EVE fields of a signature alert, not repeated in
    // `moni_details`: the packet's number in its capture and the packet.
    let mut top = Map::new();
    if let Some(d) = details.as_object_mut() {
        for key in ["pcap_cnt", "packet", "linktype"] {
            if let Some(v) = d.remove(key) {
                top.insert(key.into(), v);
            }
        }
    }
    // Rule metadata "key value" strings become {"key": ["value", ...]}.
    let mut metadata: Map<String, Value> = Map::new();
    if let Some(list) = details
        .as_object_mut()
        .and_then(|d| d.remove("metadata"))
        .and_then(|m| m.as_array().cloned())
    {
        // One string per `metadata:` keyword, its pairs comma-separated.
        for item in list
            .iter()
            .filter_map(Value::as_str)
            .flat_map(|m| m.split(','))
        {
            let item = item.trim();
            let (k, v) = item.split_once(char::is_whitespace).unwrap_or((item, ""));
            if k.is_empty() {
                continue;
            }
            if let Value::Array(vals) = metadata
                .entry(k.to_string())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                vals.push(v.trim().into());
            }
        }
    }
    metadata.insert("moni_vnet".into(), json!([vnets.get(a.vnet).name]));
    metadata.insert("moni_kind".into(), json!([a.kind]));
    metadata.insert("moni_start".into(), json!([ts(a.time)]));
    metadata.insert("moni_details".into(), json!([details.to_string()]));
    if let Some(kind) = &a.tunnel.tunnel_type {
        metadata.insert("moni_tunnel_type".into(), json!([kind]));
        if let Some(id) = a.tunnel.tunnel_id {
            metadata.insert("moni_tunnel_id".into(), json!([id.to_string()]));
        }
    }
    let src = a.src_addr.or(a.trigger.map(|t| t.0));
    let dst = a.dst_addr.or(a.trigger.map(|t| t.1));
    // As Suricata writes it in IDS mode: a reject rule's alert is
    // "blocked" (Suricata answers the sender even then), every other
    // alert "allowed", a drop rule's too.
    let action = if details.get("action").and_then(Value::as_str) == Some("reject") {
        "blocked"
    } else {
        "allowed"
    };
    let mut alert = json!({
        "action": action,
        "gid": 1,
        "signature_id": a.signature_id,
        "rev": a.rev,
        "signature": a.signature,
        "category": a.category,
        "severity": a.severity,
        "metadata": metadata,
    });
    let endpoint = |ip: Option<std::net::IpAddr>, port: Option<u16>| {
        let mut e = Map::new();
        if let Some(ip) = ip {
            e.insert("ip".into(), eve_ip(ip).into());
        }
        if let Some(p) = port {
            e.insert("port".into(), p.into());
        }
        Value::Object(e)
    };
    if a.kind != "signature" {
        // Behavioural alerts: the attacker (when known) and the target
        // (the victim of a flood, the scanned host).
        if let Some(obj) = alert.as_object_mut() {
            if a.src_addr.is_some() {
                obj.insert("source".into(), endpoint(a.src_addr, a.src_port));
            }
            if a.dst_addr.is_some() {
                obj.insert("target".into(), endpoint(a.dst_addr, a.dst_port));
            }
        }
    }
    let mut v = json!({
        "timestamp": ts(a.end),
        "event_type": "alert",
        "in_iface": iface,
        "pkt_src": "wire/pcap",
        "host": host,
        "proto": proto,
        "alert": alert,
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(x) = a.flow_id {
            obj.insert("flow_id".into(), x.into());
        }
        if let Some(f) = a.flow {
            let mut flow = json!({
                "pkts_toserver": f.pkts_toserver,
                "pkts_toclient": f.pkts_toclient,
                "bytes_toserver": f.bytes_toserver,
                "bytes_toclient": f.bytes_toclient,
                "start": ts(f.start),
            });
            // Suricata 7 repeats the flow's 5-tuple in its initiator's
            // direction: the alerting packet's for a to_server packet,
            // swapped for a to_client one.
            let packet = (a.src_addr, a.src_port, a.dst_addr, a.dst_port);
            let initiator = match a.to_server {
                Some(true) => Some(packet),
                Some(false) => Some((packet.2, packet.3, packet.0, packet.1)),
                None => None,
            };
            if let (Some((Some(sa), sp, Some(da), dp)), Some(o)) = (initiator, flow.as_object_mut())
            {
                o.insert("src_ip".into(), eve_ip(sa).into());
                o.insert("dest_ip".into(), eve_ip(da).into());
                if let (Some(sp), Some(dp)) = (sp, dp) {
                    o.insert("src_port".into(), sp.into());
                    o.insert("dest_port".into(), dp.into());
                }
            }
            obj.insert("flow".into(), flow);
        }
        if let Some(up) = a.to_server {
            obj.insert(
                "direction".into(),
                if up { "to_server" } else { "to_client" }.into(),
            );
        }
        if !a.vlans.is_empty() {
            obj.insert("vlan".into(), a.vlans.clone().into());
        }
        if let Some(n) = top.remove("pcap_cnt") {
            obj.insert("pcap_cnt".into(), n);
        }
        if let (Some(p), Some(l)) = (top.remove("packet"), top.remove("linktype")) {
            obj.insert("packet".into(), p);
            obj.insert("packet_info".into(), json!({ "linktype": l }));
        }
        // Suricata puts an ICMP packet's type and code at the top level.
        for key in ["icmp_type", "icmp_code"] {
            if let Some(v) = details.get(key) {
                obj.insert(key.into(), v.clone());
            }
        }
        // The tunnel: EVE's `tunnel` object has the outer packet's
        // addresses, protocol, depth and number, and `pkt_src` names the
        // decoder the inner packet came from, as Suricata writes them; the
        // tunnel's type and id are in `alert.metadata`.
        if let Some(kind) = &a.tunnel.tunnel_type {
            if let (Some(src), Some(dst)) = (a.tunnel.outer_src_addr, a.tunnel.outer_dst_addr) {
                let pcap_cnt = obj.get("pcap_cnt").cloned();
                let mut tunnel = json!({
                    "src_ip": eve_ip(src),
                    "dest_ip": eve_ip(dst),
                    "depth": kind.split('/').count(),
                    "pkt_src": "wire/pcap",
                });
                if let Some(t) = tunnel.as_object_mut() {
                    match kind.split('/').next().unwrap_or_default() {
                        // GRE has no ports: Suricata writes 0.
                        "gre" | "erspan2" | "erspan3" => {
                            t.insert("proto".into(), "GRE".into());
                            t.insert("src_port".into(), 0.into());
                            t.insert("dest_port".into(), 0.into());
                        }
                        // The outer UDP ports are not kept.
                        "vxlan" | "geneve" | "gtpu" => {
                            t.insert("proto".into(), "UDP".into());
                        }
                        _ => {}
                    }
                    if let Some(n) = pcap_cnt {
                        t.insert("pcap_cnt".into(), n);
                    }
                }
                obj.insert("tunnel".into(), tunnel);
                let inner_src = match kind.rsplit('/').next().unwrap_or_default() {
                    "gre" | "erspan2" | "erspan3" => Some("gre tunnel"),
                    "vxlan" => Some("vxlan encapsulation"),
                    "geneve" => Some("geneve encapsulation"),
                    "ipip" if src.is_ipv6() => Some("ipv6 tunnel"),
                    "ipip" => Some("ipv4 tunnel"),
                    _ => None,
                };
                if let Some(p) = inner_src {
                    obj.insert("pkt_src".into(), p.into());
                }
            }
        }
        if let Some(x) = src {
            obj.insert("src_ip".into(), eve_ip(x).into());
        }
        if let Some(x) = a.src_port {
            obj.insert("src_port".into(), x.into());
        }
        if let Some(x) = dst {
            obj.insert("dest_ip".into(), eve_ip(x).into());
        }
        if let Some(x) = a.dst_port {
            obj.insert("dest_port".into(), x.into());
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_are_written_as_suricata_writes_them() {
        // As Suricata 7.0.10's eve.json has them (sip-ipv6-frag-sll.pcap).
        let v6: std::net::IpAddr = "fd17:625c:f037:2:a00:27ff:feb9:1521".parse().expect("v6");
        assert_eq!(super::eve_ip(v6), "fd17:625c:f037:0002:0a00:27ff:feb9:1521");
        let v4: std::net::IpAddr = "10.0.0.1".parse().expect("v4");
        assert_eq!(super::eve_ip(v4), "10.0.0.1");
    }
}
