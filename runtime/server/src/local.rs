//! The operator's door: a Unix socket in the data dir (`DATA/run/serve.sock`: the socket 0600,
//! in a directory 0700, so nobody else can reach it even while it is being bound) on which
//! every request acts with the admin key's authority (docs/api.md, "The operator's socket").
//!
//! The embedded store is one process's at a time, so while `airlock serve` runs the CLI's
//! listing verbs ask it here instead of opening the store. Whoever can connect can already
//! read the data dir, its master key and its database: the socket grants nothing the files do
//! not, and nothing over the network. A request from TCP can never carry [`Operator`]: only the
//! socket's accept loop inserts it.

use std::io;
use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// The private directory the socket is made in, under the data dir.
const RUN_DIR: &str = "run";
/// The socket's file name in [`RUN_DIR`].
const SOCKET: &str = "serve.sock";

/// Marks a request that came through the operator's socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operator;

/// Where the socket of the server on data dir `data` is.
pub fn socket_path(data: &Path) -> PathBuf {
    data.join(RUN_DIR).join(SOCKET)
}

/// Whether a server on `data` has its operator's socket there (it removes it when it stops).
pub fn is_serving(data: &Path) -> bool {
    std::fs::symlink_metadata(socket_path(data)).is_ok_and(|m| m.file_type().is_socket())
}

/// Binds the operator's socket in `data`, replacing a socket a stopped server left behind (the
/// caller holds the store, so no other server is using it). The directory is made (or made
/// again) 0700 before the socket exists: however the data dir and the umask are set, nobody
/// else can connect between the bind and the socket's own 0600. Anything but a socket by that
/// name is left alone and refused.
pub fn bind(data: &Path) -> io::Result<UnixListener> {
    let dir = data.join(RUN_DIR);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .or_else(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    if !std::fs::symlink_metadata(&dir)?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a directory", dir.display()),
        ));
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let path = socket_path(data);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(&path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Removes the socket when the server stops, so the CLI opens the store itself again.
pub fn unbind(data: &Path) {
    let path = socket_path(data);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}
