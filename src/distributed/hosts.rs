//! The machines of a run spread over several hosts, in `mlx.launch`'s
//! hostfile format: a JSON list with one entry per rank,
//! `{"ssh": "user@mac-b.local", "ips": ["192.168.1.11"]}`, `ssh` being how
//! to reach the host and `ips` the addresses the other hosts reach it at.
//! FineTune reads one more optional key, `ft`: the path of the `ft` command
//! on that host (by default the same path as this one's). A host listed
//! twice runs two ranks (one GPU each under NCCL).

use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// One rank's machine.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Host {
    /// The ssh destination (`host`, `user@host`); `localhost` for this
    /// machine.
    pub ssh: String,
    /// The addresses the other hosts reach this one at (the first is used).
    #[serde(default)]
    pub ips: Vec<String>,
    /// The `ft` command on that host.
    #[serde(default)]
    pub ft: Option<String>,
}

impl Host {
    /// This machine, on loopback.
    pub fn local() -> Self {
        Self {
            ssh: "localhost".into(),
            ips: vec!["127.0.0.1".into()],
            ft: None,
        }
    }

    /// Whether the host is this machine (started without ssh).
    pub fn is_this_machine(&self) -> bool {
        let name = self.ssh.rsplit('@').next().unwrap_or(&self.ssh);
        matches!(name, "localhost" | "127.0.0.1" | "::1")
            || Some(name) == this_hostname().as_deref()
    }

    /// The host's name for messages: `beta` for `user@beta`; `127.0.0.1
    /// (this machine)` for this one.
    pub fn label(&self) -> String {
        if self.is_this_machine() {
            format!(
                "{} (this machine)",
                self.address().unwrap_or_else(|_| self.ssh.clone())
            )
        } else {
            self.ssh.rsplit('@').next().unwrap_or(&self.ssh).to_string()
        }
    }

    /// The address the other ranks reach this host at: its first `ips`
    /// entry, else its ssh name resolved.
    pub fn address(&self) -> Result<String> {
        if let Some(ip) = self.ips.first() {
            return Ok(ip.clone());
        }
        if self.is_this_machine() {
            return Ok("127.0.0.1".into());
        }
        let name = self.ssh.rsplit('@').next().unwrap_or(&self.ssh);
        (name, 0)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.find(|a| a.is_ipv4()))
            .map(|a| a.ip().to_string())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "host {}: no \"ips\" given and its name does not resolve; \
                     add the address the other hosts reach it at",
                    self.ssh
                ))
            })
    }
}

/// `n` ranks on this machine.
pub fn local(n: usize) -> Vec<Host> {
    vec![Host::local(); n]
}

/// Reads and checks a hostfile: every entry names its host and every
/// address is an IP address.
pub fn read(path: &Path) -> Result<Vec<Host>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

fn parse(text: &str) -> std::result::Result<Vec<Host>, String> {
    let entries: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| {
        format!("not a hostfile (a JSON list of {{\"ssh\": …, \"ips\": […]}}): {e}")
    })?;
    if entries.is_empty() {
        return Err("lists no hosts".into());
    }
    let mut hosts = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let n = i + 1;
        let host: Host = serde_json::from_value(entry)
            .map_err(|e| format!("entry {n}: {e} (each entry needs \"ssh\": the host's name)"))?;
        if host.ssh.trim().is_empty() || host.ssh.starts_with('-') {
            return Err(format!(
                "entry {n}: \"ssh\" must name a host, not {:?}",
                host.ssh
            ));
        }
        if let Some(bad) = host.ips.iter().find(|ip| ip.parse::<IpAddr>().is_err()) {
            return Err(format!(
                "entry {n} ({}): {bad:?} is not an IP address",
                host.ssh
            ));
        }
        if host.ft.as_deref().is_some_and(|f| f.trim().is_empty()) {
            return Err(format!("entry {n} ({}): \"ft\" is empty", host.ssh));
        }
        hosts.push(host);
    }
    Ok(hosts)
}

/// Each rank's place among the earlier ranks of its host (its GPU under
/// NCCL).
pub fn local_indices(hosts: &[Host]) -> Vec<usize> {
    hosts
        .iter()
        .enumerate()
        .map(|(i, h)| hosts[..i].iter().filter(|o| o.ssh == h.ssh).count())
        .collect()
}

/// The ring backend's hostfile for `hosts`: per rank, the `ip:port` it
/// listens at, the ports taken from `ports` in order.
pub fn ring_addresses(hosts: &[Host], ports: &[u16]) -> Result<Vec<Vec<String>>> {
    hosts
        .iter()
        .zip(ports)
        .map(|(h, port)| {
            let ip = h.address()?;
            Ok(vec![if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            }])
        })
        .collect()
}

fn this_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let name = name.trim().to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlx_launch_hostfiles_are_read_with_our_ft_key() {
        let hosts = parse(
            r#"[{"ssh": "alice@mac-a", "ips": ["10.0.0.1"]},
                {"ssh": "mac-b", "ips": ["10.0.0.2"], "ft": "/opt/ft", "rdma": []}]"#,
        )
        .unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0].label(), "mac-a");
        assert_eq!(hosts[1].ft.as_deref(), Some("/opt/ft"));
        assert_eq!(
            ring_addresses(&hosts, &[5000, 5001]).unwrap(),
            vec![
                vec!["10.0.0.1:5000".to_string()],
                vec!["10.0.0.2:5001".to_string()]
            ]
        );
    }

    #[test]
    fn bad_hostfiles_name_the_entry_and_the_fault() {
        let cases = [
            ("{}", "not a hostfile"),
            ("[]", "lists no hosts"),
            (r#"[{"ips": ["10.0.0.1"]}]"#, "entry 1"),
            (
                r#"[{"ssh": "a"}, {"ssh": "b", "ips": ["ten"]}]"#,
                "entry 2 (b): \"ten\"",
            ),
            (r#"[{"ssh": "-oProxyCommand=x"}]"#, "must name a host"),
            (r#"[{"ssh": "a", "ft": " "}]"#, "\"ft\" is empty"),
        ];
        for (text, said) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(said), "{text}: {e}");
        }
    }

    #[test]
    fn a_host_listed_twice_runs_two_ranks_with_their_own_gpus() {
        let a = Host {
            ssh: "a".into(),
            ips: vec!["10.0.0.1".into()],
            ft: None,
        };
        let b = Host {
            ssh: "b".into(),
            ..a.clone()
        };
        assert_eq!(local_indices(&[a.clone(), b, a]), vec![0, 0, 1]);
        assert!(Host::local().is_this_machine());
        assert_eq!(Host::local().label(), "127.0.0.1 (this machine)");
    }
}
