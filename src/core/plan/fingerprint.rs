//! The fingerprint of an observed state: what a saved plan was made against.

use crate::model::content_key::SwarmContentKey;
use crate::model::Observed;
use sha2::{Digest, Sha256};

/// `sha256:<hex>` of the parts of the observed state a plan depends on: machines and their
/// membership, the swarm and its content key (a digest of it), nodes (role, availability,
/// state, labels, version), object names and IDs and service versions, and the engines' API
/// version when known (an upgraded engine stores other fields). Task counts and the
/// observation time are left out, so a plan only goes stale when something it acts on changed.
pub fn fingerprint(observed: &Observed) -> String {
    let mut hasher = Sha256::new();
    let mut line = |text: String| {
        hasher.update(text.as_bytes());
        hasher.update(b"\n");
    };
    for machine in observed.machines.values() {
        line(format!(
            "machine {} {:?} {:?} {:?}",
            machine.name, machine.state, machine.swarm_state, machine.node_id
        ));
    }
    if let Some(api_version) = observed.api_version {
        line(format!("api {api_version}"));
    }
    if let Some(swarm) = &observed.swarm {
        line(format!(
            "swarm {} {:?}",
            swarm.id,
            swarm.quorum_error.is_some()
        ));
        // Versions depend on the content key: a key written since makes a plan stale.
        let key = match &swarm.content_key {
            SwarmContentKey::Absent => "none".to_string(),
            SwarmContentKey::Malformed => "malformed".to_string(),
            SwarmContentKey::Key(key) => key.fingerprint(),
        };
        line(format!("content-key {key}"));
    }
    for node in observed.nodes.values() {
        line(format!(
            "node {} {:?} {:?} {:?} {:?} {:?} {} {:?}",
            node.id,
            node.machine,
            node.role,
            node.availability,
            node.state,
            node.labels,
            node.version,
            node.reachability
        ));
    }
    for (name, service) in &observed.services {
        line(format!("service {name} {} {}", service.id, service.version));
    }
    for (kind, objects) in [
        ("network", &observed.networks),
        ("secret", &observed.secrets),
        ("config", &observed.configs),
    ] {
        for (name, object) in objects {
            line(format!("{kind} {name} {}", object.id));
        }
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::engine_api::ApiVersion;

    #[test]
    fn an_engine_upgrade_makes_a_saved_plan_stale() {
        let mut observed = Observed::default();
        let unknown = fingerprint(&observed);
        observed.api_version = ApiVersion::parse("1.41");
        let old = fingerprint(&observed);
        observed.api_version = ApiVersion::parse("1.51");
        assert_ne!(old, fingerprint(&observed));
        assert_ne!(unknown, old);
    }
}
