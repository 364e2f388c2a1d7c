//! Rights a connection may hold (PROTOCOL.md, "Rights"), as a small bit set.

use serde::{Deserialize, Serialize};

/// One right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Perm {
    /// Create rooms (`create`, and auto-create on `join`).
    Create,
    /// Publish into rooms one is a member of.
    Publish,
    /// Direct messages to users.
    Send,
    /// Messages to every connection.
    Broadcast,
    /// Read member lists.
    Presence,
    /// Everything, and any private room.
    Admin,
    /// Connect at all (checked only with `auth.require_connect`).
    Connect,
}

impl Perm {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Perm::Create => "create",
            Perm::Publish => "publish",
            Perm::Send => "send",
            Perm::Broadcast => "broadcast",
            Perm::Presence => "presence",
            Perm::Admin => "admin",
            Perm::Connect => "connect",
        }
    }

    /// The right named `name`, if any.
    pub fn parse(name: &str) -> Option<Perm> {
        [
            Perm::Create,
            Perm::Publish,
            Perm::Send,
            Perm::Broadcast,
            Perm::Presence,
            Perm::Admin,
            Perm::Connect,
        ]
        .into_iter()
        .find(|p| p.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of rights. `admin` implies every other right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perms(u8);

impl Perms {
    /// The set holding `perms`.
    pub fn from_list(perms: &[Perm]) -> Perms {
        Perms(perms.iter().fold(0, |acc, p| acc | p.bit()))
    }

    /// Whether the set grants `perm` (directly or through `admin`).
    pub fn allows(self, perm: Perm) -> bool {
        self.0 & (perm.bit() | Perm::Admin.bit()) != 0
    }

    /// `Ok` if `perm` is granted, else a `forbidden` refusal naming it.
    pub fn require(self, perm: Perm) -> Result<(), crate::error::Refusal> {
        if self.allows(perm) {
            Ok(())
        } else {
            Err(crate::error::Refusal::new(
                crate::error::ErrorCode::Forbidden,
                format!("this connection lacks the `{}` right", perm.as_str()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_implies_everything() {
        let p = Perms::from_list(&[Perm::Admin]);
        assert!(p.allows(Perm::Broadcast));
        assert!(p.allows(Perm::Create));
        let p = Perms::from_list(&[Perm::Publish]);
        assert!(p.allows(Perm::Publish));
        assert!(!p.allows(Perm::Broadcast));
        let err = p.require(Perm::Broadcast).expect_err("forbidden");
        assert!(err.message.contains("broadcast"));
    }
}
