//! The pure cores of rooms: no I/O, no threads, no clocks of their own.
//!
//! * [`history`]: the bounded history ring (both back ends).
//! * [`namespaces`]: kinds of rooms by name prefix and the options each
//!   room takes from its kind (both back ends, and the route's publish
//!   rules).
//! * [`table`]: the rooms a home shard sequences (single-node back end).
//! * [`order`]: a room's order on one node of a cluster (cluster back end).
//!
//! Their drivers ([`crate::shard`]'s request pump, [`crate::cluster`]'s
//! backplane) feed them ops and events with the time, and carry out what
//! they return.

pub(crate) mod history;
pub(crate) mod namespaces;
pub(crate) mod order;
pub(crate) mod table;
