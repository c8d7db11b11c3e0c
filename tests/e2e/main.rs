//! End-to-end tests: real components built from `guest-examples/`, real stores in temp dirs,
//! and the real `airlock` binary.

mod support;

mod apikey;
mod audit;
mod backup;
mod browser;
mod cache;
mod canary;
mod cli;
mod cluster;
mod connect;
mod console;
mod credentials;
mod crashes;
mod deadlines;
mod dns;
mod egress;
mod fixtures;
mod frontdoor;
mod fuel;
mod host_memory;
mod hostile;
mod install;
mod isolation;
mod kv;
mod loading;
mod mock;
mod oauth;
mod operator;
mod policy;
mod readme;
mod runs;
mod sandbox;
mod scaffold;
mod schedules;
mod secrecy;
mod server;
mod serving;
mod ssrf;
mod trust;
mod validation;
mod vault;
mod verbs;
mod webhooks;
