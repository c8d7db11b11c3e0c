//! The host's OAuth 2.0 client: it holds the client secret and refresh token, asks the
//! declared token endpoint for access tokens, and keeps them until shortly before expiry.
//!
//! Tokens come from one of three places: the client-credentials grant; a connection (the
//! tokens a person's consent produced through the authorization-code flow with PKCE, stored
//! per tenant or per user, see [`ConnectionTokens`]); or a refresh token stored with the client
//! itself. A refresh token the server refuses marks the connection as needing re-consent.
//!
//! One token call at a time per (tenant, installation, credential) (CR-11, CR-13): concurrent
//! requests wait for the one in flight and share its token. Token calls go through the same
//! transport as guest requests, so the token URL passes the same address checks.
//!
//! The client secret and every refresh token go only to the token endpoint origin they were
//! stored for: a stored client is bound to it (with its rules' origins), and a connection
//! records the origin that issued it. A manifest that declares another token URL gets
//! `credential-unbound` until the client is stored again and the person connects again.
//!
//! The cache holds at most [`MAX_SLOTS`] credentials (least recently used dropped first), and
//! forgetting a credential or user removes its entry, so a flood of distinct users cannot grow
//! it without bound.
//!
//! # Layout
//! - [`client`]: the declared parameters ([`OAuthSpec`]) and the client the operator stored
//!   ([`OAuthClient`]), bound to the token endpoint origin it was stored for.
//! - [`connection`]: what one consent produced ([`ConnectionTokens`]) and whose account it was.
//! - [`endpoint`]: one token call and what its response means.
//! - [`tokens`]: [`OAuthTokens`], the bounded, single-flight cache every token goes through.

mod client;
mod connection;
mod endpoint;
mod tokens;

pub use client::{OAuthClient, OAuthGrant, OAuthSpec, registered_client, token_origin};
pub use connection::{AccountSource, ConnectionTokens, ProviderAccount};
pub use tokens::{MAX_SLOTS, OAuthTokens};
