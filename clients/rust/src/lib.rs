//! Async Rust client for the shardcast WebSocket room broker.
//!
//! One [`Client`] is one logical connection that survives network cuts,
//! broker restarts and drains: it reconnects with full-jitter backoff,
//! rejoins every room with `since` (and, on protocol 1.1 servers, the
//! room's `epoch`), and delivers each room's messages exactly once, in
//! `seq` order, the missed ones first. When it cannot, it says so with
//! [`Event::Gap`] and [`Event::Resumed`] `{ recovered: false }`. Requests
//! carry ids and always settle: on their reply, a timeout, or a disconnect.
//! Tokens come from a [`TokenSource`](options::TokenSource), called before
//! every connection and again before the token's `exp` to send `refresh`.
//! The rules are the same as the JavaScript client's (`clients/js`).
//!
//! # Example
//!
//! ```no_run
//! use shardcast_client::{Client, Event, JoinOptions, Options};
//!
//! # async fn demo() -> Result<(), shardcast_client::Error> {
//! let (client, mut events) = Client::connect(Options::new("ws://127.0.0.1:8080/ws").user("alice"));
//! let lobby = client.room("lobby");
//! lobby.join(JoinOptions::default()).await?;
//! let seq = lobby.publish(&serde_json::json!({"text": "hi"})).await?;
//! while let Some(event) = events.next().await {
//!     match event {
//!         Event::Message(m) => println!("#{} {}: {}", m.seq, m.from, m.data),
//!         Event::Resumed { recovered: false, room, .. } => println!("{room}: reload state"),
//!         Event::State { state, reason, .. } => println!("{state:?} {reason:?}"),
//!         _ => {}
//!     }
//! #   if seq > 0 { break; }
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! Read [`Events`] continuously (for example in a task of its own): it is a
//! bounded channel, and while it is full the client stops reading from the
//! server, which then applies its slow-consumer policy.

mod client;
mod connection;
mod error;
mod frames;
pub mod options;
mod policy;
mod room;
mod token;

pub use client::{Client, Event, Events, JoinOptions, JoinResult, Room, State};
pub use error::Error;
pub use frames::{Direct, Member, Members, Message, Notification, Presence, ServerError, Welcome};
pub use options::Options;
