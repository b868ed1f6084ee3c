//! [`StreamInfo`]: what a stream object holds, stored beside it so a bucket can
//! be understood without downloading streams.
//!
//! The sidecar object `KEY.rawsend.json` is written after the stream object
//! `KEY` completed (its size and checksum are known only then), so a stream
//! without a sidecar is not one rawsend finished uploading. Identity comes
//! from the stream's first command (SUBVOL, or SNAPSHOT for an incremental);
//! clone sources and flags ([`Origin`]) from whoever made the stream, which
//! knows them (the stream only shows what it did clone from, once read whole).
//! Fields added later have serde defaults, so older sidecars still parse.

use rawsend_stream::{Command, Item, StreamReader};
use serde::{Deserialize, Serialize};

use crate::write::Uploaded;
use crate::{Error, Result, Store};

/// Suffix of the metadata sidecar of a stream object.
pub const SIDECAR_SUFFIX: &str = ".rawsend.json";

/// A stream object and the subvolume it carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// The stream object's key.
    pub key: String,
    /// The subvolume's name, as in the stream.
    pub name: String,
    /// The sender's UUID of the subvolume.
    pub uuid: String,
    /// The sender's ctransid of the subvolume.
    pub ctransid: u64,
    /// The parent's UUID for an incremental stream; `None` for a full one.
    pub parent_uuid: Option<String>,
    /// The parent's ctransid for an incremental stream.
    pub parent_ctransid: Option<u64>,
    /// Send protocol version.
    pub version: u32,
    /// Size of the stream object in bytes.
    pub size: u64,
    /// SHA-256 of the whole stream, lowercase hex.
    pub sha256: String,
    /// Clone sources and flags: how the stream was made.
    #[serde(flatten)]
    pub origin: Origin,
}

/// How a stream was made: what it may clone from and what kind of stream it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The subvolumes the stream may clone from (the parent of an incremental among
    /// them), as the receiver finds them; `None` when not known (sidecars of older
    /// rawsend versions, streams transcoded from a file).
    #[serde(default)]
    pub clone_sources: Option<Vec<CloneSource>>,
    /// What kind of stream it is, e.g. `compressed-data`, `no-data`,
    /// `transcoded`, `compress=zstd:3`; unknown flags are kept as they are.
    #[serde(default)]
    pub flags: Vec<String>,
}

/// A subvolume a stream may clone from, as the stream names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneSource {
    /// Its received UUID if it was received, else its UUID (what the kernel puts in
    /// CLONE and SNAPSHOT commands, and the receiver looks up).
    pub uuid: String,
    /// Its ctransid.
    pub ctransid: u64,
}

impl StreamInfo {
    /// Describes the upload of `key`, made as `origin` says, from its first bytes;
    /// `None` if they do not start with a stream header and a SUBVOL or SNAPSHOT command.
    pub fn describe(key: &str, uploaded: &Uploaded, origin: Origin) -> Option<StreamInfo> {
        let mut reader = StreamReader::new(uploaded.head.as_slice());
        let Ok(Some(Item::Header { version, .. })) = reader.next() else { return None };
        let Ok(Some(Item::Command(record))) = reader.next() else { return None };
        let (name, uuid, ctransid, parent) = match record.command {
            Command::Subvol { path, uuid, ctransid } => (path.to_string(), uuid, ctransid, None),
            Command::Snapshot { path, uuid, ctransid, clone_uuid, clone_ctransid } => {
                (path.to_string(), uuid, ctransid, Some((clone_uuid, clone_ctransid)))
            }
            _ => return None,
        };
        Some(StreamInfo {
            key: key.to_owned(),
            name,
            uuid: uuid.to_string(),
            ctransid,
            parent_uuid: parent.map(|(uuid, _)| uuid.to_string()),
            parent_ctransid: parent.map(|(_, ctransid)| ctransid),
            version,
            size: uploaded.size,
            sha256: uploaded.sha256.clone(),
            origin,
        })
    }
}

impl Store {
    /// Writes the sidecar of `info.key`.
    pub fn put_info(&self, info: &StreamInfo) -> Result<()> {
        let json = serde_json::to_vec_pretty(info).expect("StreamInfo serializes");
        self.put_small(&sidecar_key(&info.key), json)
    }

    /// The streams under `prefix` that have a sidecar, in key order.
    pub fn stream_infos(&self, prefix: &str) -> Result<Vec<StreamInfo>> {
        let sidecars = self.list(prefix)?.into_iter().filter(|(key, _)| key.ends_with(SIDECAR_SUFFIX));
        sidecars.map(|(key, _)| self.read_info(&key)).collect()
    }

    /// The metadata of the stream object `key`; `None` if it has no sidecar.
    pub fn stream_info(&self, key: &str) -> Result<Option<StreamInfo>> {
        match self.read_info(&sidecar_key(key)) {
            Ok(info) => Ok(Some(info)),
            Err(Error::ObjectMissing { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Reads and parses the sidecar object `sidecar`.
    fn read_info(&self, sidecar: &str) -> Result<StreamInfo> {
        let json = self.get_small(sidecar)?;
        serde_json::from_slice(&json).map_err(|source| Error::Metadata { url: self.url(sidecar), source })
    }
}

/// The key of the sidecar of stream object `key`.
fn sidecar_key(key: &str) -> String {
    format!("{key}{SIDECAR_SUFFIX}")
}

/// The streams of `infos` as chains: each full stream followed by the incrementals
/// based on it (depth-first), with their depth; incrementals whose parent is not in
/// `infos` come last, at depth 0.
pub fn chains(infos: &[StreamInfo]) -> Vec<(usize, &StreamInfo)> {
    let mut out = Vec::new();
    let has_parent = |info: &StreamInfo| {
        info.parent_uuid.as_ref().is_some_and(|parent| infos.iter().any(|other| &other.uuid == parent))
    };
    for root in infos.iter().filter(|info| !has_parent(info)) {
        push_tree(infos, root, 0, &mut out);
    }
    out
}

fn push_tree<'a>(
    infos: &'a [StreamInfo],
    node: &'a StreamInfo,
    depth: usize,
    out: &mut Vec<(usize, &'a StreamInfo)>,
) {
    // A stream seen already (a UUID cycle in hostile sidecars) is not descended again.
    if out.iter().any(|(_, seen)| std::ptr::eq(*seen, node)) {
        return;
    }
    out.push((depth, node));
    for child in infos.iter().filter(|info| info.parent_uuid.as_ref() == Some(&node.uuid)) {
        push_tree(infos, child, depth + 1, out);
    }
}

/// The streams to receive, in order, to restore the snapshot `name`: the last stream
/// (in key order) of that name, preceded by its parents back to a full stream.
pub fn chain_to<'a>(infos: &'a [StreamInfo], name: &str) -> Result<Vec<&'a StreamInfo>> {
    let broken = |reason: String| Error::Chain { name: name.to_owned(), reason };
    let mut node = infos
        .iter()
        .rev()
        .find(|info| info.name == name)
        .ok_or_else(|| broken("no stream of it".to_owned()))?;
    let mut chain = vec![node];
    while let Some(parent) = &node.parent_uuid {
        node = infos
            .iter()
            .rev()
            .find(|info| &info.uuid == parent)
            .ok_or_else(|| broken(format!("no stream of {parent}, the parent of {}", node.key)))?;
        if chain.len() > infos.len() {
            return Err(broken(format!("its chain has a cycle at {}", node.key)));
        }
        chain.push(node);
    }
    chain.reverse();
    Ok(chain)
}

/// The clone sources of the streams of `chain` (in receive order) that neither the
/// stream itself nor an earlier one makes, each with its stream: the receiver must
/// have them already.
/// Streams whose clone sources are not known have none here.
pub fn clone_sources_outside<'a>(chain: &[&'a StreamInfo]) -> Vec<(&'a StreamInfo, &'a CloneSource)> {
    let mut outside = Vec::new();
    for (index, info) in chain.iter().enumerate() {
        for source in info.origin.clone_sources.iter().flatten() {
            if !chain[..=index].iter().any(|earlier| earlier.uuid == source.uuid) {
                outside.push((*info, source));
            }
        }
    }
    outside
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD_SIDECAR: &str = r#"{"key": "k", "name": "s1", "uuid": "u", "ctransid": 7, "parent_uuid": null,
        "parent_ctransid": null, "version": 1, "size": 10, "sha256": "ab"}"#;

    #[test]
    fn sidecar_without_origin_parses_with_it_unknown() {
        let info: StreamInfo = serde_json::from_str(OLD_SIDECAR).expect("an older sidecar parses");
        assert_eq!(info.origin, Origin::default());
        assert_eq!((info.name.as_str(), info.ctransid), ("s1", 7));
    }

    /// A stream of subvolume `uuid` that may clone from `sources` (`None`: not known).
    fn stream(uuid: &str, sources: Option<&[&str]>) -> StreamInfo {
        let mut info: StreamInfo = serde_json::from_str(OLD_SIDECAR).expect("parses");
        info.uuid = uuid.to_owned();
        let source = |uuid: &&str| CloneSource { uuid: uuid.to_string(), ctransid: 1 };
        info.origin.clone_sources = sources.map(|sources| sources.iter().map(source).collect());
        info
    }

    #[test]
    fn clone_sources_outside_a_chain_are_those_no_earlier_stream_makes() {
        let full = stream("a", Some(&["x"]));
        let incremental = stream("b", Some(&["a", "y", "b"]));
        let unknown = stream("c", None);
        let chain = [&full, &incremental, &unknown];
        let outside: Vec<(&str, &str)> = clone_sources_outside(&chain)
            .into_iter()
            .map(|(info, source)| (info.uuid.as_str(), source.uuid.as_str()))
            .collect();
        assert_eq!(outside, [("a", "x"), ("b", "y")]);
    }

    #[test]
    fn origin_is_written_beside_the_other_fields_and_read_back() {
        let mut info: StreamInfo = serde_json::from_str(OLD_SIDECAR).expect("parses");
        info.origin = Origin {
            clone_sources: Some(vec![CloneSource { uuid: "c".to_owned(), ctransid: 3 }]),
            flags: vec!["compressed-data".to_owned()],
        };
        let json: serde_json::Value = serde_json::to_value(&info).expect("serializes");
        assert_eq!(json["clone_sources"], serde_json::json!([{"uuid": "c", "ctransid": 3}]));
        assert_eq!(json["flags"], serde_json::json!(["compressed-data"]));
        assert_eq!(serde_json::from_value::<StreamInfo>(json).expect("reads back"), info);
    }
}
