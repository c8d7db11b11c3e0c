//! Bundles as the runtime uses them: the format itself is `airlock-bundle`; here an
//! integration directory is packed and signed ([`pack`]), and a bundle is read once, verified
//! against the trust store and loaded from the same bytes ([`trusted`]).

pub mod pack;
pub mod trusted;

pub use airlock_bundle::*;
pub use pack::{PackError, SignedBundle, collect, sign_dir};
pub use trusted::{
    OpenError, load_installed, load_trusted, load_verified, read_bundle, verify_trusted,
};
