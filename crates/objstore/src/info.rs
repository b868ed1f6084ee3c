//! [`StreamInfo`]: what a stream object holds, stored beside it so a bucket can
//! be understood without downloading streams.
//!
//! The sidecar object `KEY.rawsend.json` is written after the stream object
//! `KEY` completed (its size and checksum are known only then), so a stream
//! without a sidecar is not one rawsend finished uploading. Identity comes
//! from the stream's first command (SUBVOL, or SNAPSHOT for an incremental).

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
}

impl StreamInfo {
    /// Describes the upload of `key` from its first bytes; `None` if they do not start
    /// with a stream header and a SUBVOL or SNAPSHOT command.
    pub fn describe(key: &str, uploaded: &Uploaded) -> Option<StreamInfo> {
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
        })
    }
}

impl Store {
    /// Writes the sidecar of `info.key`.
    pub fn put_info(&self, info: &StreamInfo) -> Result<()> {
        let json = serde_json::to_vec_pretty(info).expect("StreamInfo serializes");
        self.put_small(&format!("{}{SIDECAR_SUFFIX}", info.key), json)
    }

    /// The streams under `prefix` that have a sidecar, in key order.
    pub fn stream_infos(&self, prefix: &str) -> Result<Vec<StreamInfo>> {
        let mut infos = Vec::new();
        for (key, _) in self.list(prefix)? {
            if !key.ends_with(SIDECAR_SUFFIX) {
                continue;
            }
            infos.push(self.parse_info(&key, &self.get_small(&key)?)?);
        }
        Ok(infos)
    }

    /// The metadata of stream `key`, or `None` if it has no sidecar.
    pub fn stream_info(&self, key: &str) -> Result<Option<StreamInfo>> {
        let sidecar = format!("{key}{SIDECAR_SUFFIX}");
        match self.get_small(&sidecar) {
            Ok(json) => self.parse_info(&sidecar, &json).map(Some),
            Err(Error::ObjectMissing { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Parses the sidecar `key` holding `json`.
    fn parse_info(&self, key: &str, json: &[u8]) -> Result<StreamInfo> {
        serde_json::from_slice(json).map_err(|source| Error::Metadata { url: self.url(key), source })
    }
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
