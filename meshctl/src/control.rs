//! The control channel between the `meshctl` CLI and a mesh's daemon: one JSON request and one JSON response per
//! connection on the mesh's Unix socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};

use crate::cluster::ClusterConfig;
use crate::error::Error;
use crate::manifest::ManifestFile;
use crate::paths::MeshPaths;
use crate::status::StatusReport;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Request {
    Up {
        cluster: ClusterConfig,
        files: Vec<ManifestFile>,
        timeout_secs: u64,
    },
    Apply {
        files: Vec<ManifestFile>,
        timeout_secs: u64,
    },
    Status,
    Down,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Response {
    Done { message: String },
    Status { report: Box<StatusReport> },
    Failed { message: String },
}

/// Sends a request to the mesh's daemon and waits for the answer.
pub fn call(paths: &MeshPaths, request: &Request) -> Result<Response, Error> {
    let sock = paths.control_socket();
    let mut stream = UnixStream::connect(&sock).map_err(|e| Error::Mesh {
        mesh: paths.name.clone(),
        detail: format!(
            "the mesh daemon does not answer at {} ({e}); is the mesh up?",
            sock.display()
        ),
    })?;
    let mut line = serde_json::to_string(request).map_err(|e| Error::file(&sock, e))?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| Error::file(&sock, e))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| Error::file(&sock, e))?;
    serde_json::from_str(&answer).map_err(|e| Error::Mesh {
        mesh: paths.name.clone(),
        detail: format!(
            "the mesh daemon gave no answer ({e}); see {}",
            paths.daemon_log().display()
        ),
    })
}
