//! Integration tests: the real broker on port 0, real WebSocket clients.

mod abuse;
mod api;
mod auth;
mod backplane;
mod browser;
mod closes;
mod cluster;
mod cluster_namespaces;
mod config;
mod deflate;
mod edge;
mod faults;
mod harness;
mod invariants;
mod js_sdk;
mod namespaces;
mod process;
mod props;
mod protocol;
mod pusher;
mod pusher_browser;
mod pusher_js;
mod redis;
mod redis_ha;
mod rfc6455;
mod tls;
