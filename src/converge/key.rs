//! Access key decisions (pure): import the key with its fixed id and secret
//! when Garage does not have it. A key with another secret, an expired key,
//! or an id Garage burned by deleting it is a conflict: reported, never
//! overwritten or deleted.

use crate::admin::types::KeyInfo;
use crate::desired::KeyWant;

use crate::error::Conflict;

#[derive(Debug, PartialEq, Eq)]
pub enum KeyPlan {
    Import,
    Rename { from: String },
    Unchanged,
    Conflict(Conflict),
}

pub fn plan_key(found: Option<&KeyInfo>, want: &KeyWant) -> KeyPlan {
    let Some(key) = found else {
        return KeyPlan::Import;
    };
    let id = &want.id;
    match &key.secret_access_key {
        Some(secret) if secret == &want.secret => {}
        _ => {
            return KeyPlan::Conflict(Conflict {
                message: format!("access key {id} exists in Garage with a different secret"),
                hint: format!(
                    "garage-init never overwrites a key. Give the secret Garage holds \
                     (--secret-access-key-file / GARAGE_INIT_SECRET_ACCESS_KEY_FILE), or choose a new \
                     --access-key-id. Deleting the key (`garage key delete {id}`) retires its id for good."
                ),
            });
        }
    }
    if key.expired {
        return KeyPlan::Conflict(Conflict {
            message: format!("access key {id} exists in Garage but has expired"),
            hint: format!(
                "Lift the expiration with `garage key set {id} --never-expires`, then run garage-init again."
            ),
        });
    }
    if key.name != want.name {
        return KeyPlan::Rename { from: key.name.clone() };
    }
    KeyPlan::Unchanged
}

/// Garage answered 409 to importing an id that it does not list: the id was deleted.
pub fn deleted_id_conflict(id: &str) -> Conflict {
    Conflict {
        message: format!("access key {id} was deleted from Garage, and Garage never accepts a deleted key id again"),
        hint: "Choose a new id and secret (--access-key-id and --secret-access-key-file, or their \
               GARAGE_INIT_ variables) and give them to the key's users; `garage-init env` prints them."
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn want() -> KeyWant {
        KeyWant {
            id: "GK6275696c646b69742d6b6579".into(),
            secret: Secret::new("a".repeat(64)),
            name: "buildkit-key".into(),
        }
    }

    fn found(secret: &str, name: &str, expired: bool) -> KeyInfo {
        KeyInfo {
            access_key_id: want().id,
            name: name.into(),
            created: None,
            expired,
            secret_access_key: Some(Secret::new(secret)),
            buckets: vec![],
        }
    }

    #[test]
    fn missing_key_is_imported() {
        assert_eq!(plan_key(None, &want()), KeyPlan::Import);
    }

    #[test]
    fn same_secret_and_name_is_unchanged() {
        assert_eq!(plan_key(Some(&found(&"a".repeat(64), "buildkit-key", false)), &want()), KeyPlan::Unchanged);
    }

    #[test]
    fn other_secret_is_a_conflict_that_does_not_print_either_secret() {
        let plan = plan_key(Some(&found(&"b".repeat(64), "buildkit-key", false)), &want());
        let KeyPlan::Conflict(Conflict { message, hint }) = plan else { panic!("expected a conflict") };
        assert!(message.contains("different secret"));
        for text in [&message, &hint] {
            assert!(!text.contains(&"a".repeat(64)) && !text.contains(&"b".repeat(64)));
        }
    }

    #[test]
    fn expired_key_is_a_conflict() {
        let plan = plan_key(Some(&found(&"a".repeat(64), "buildkit-key", true)), &want());
        assert!(matches!(plan, KeyPlan::Conflict(Conflict { message, .. }) if message.contains("expired")));
    }

    #[test]
    fn other_name_is_renamed() {
        let plan = plan_key(Some(&found(&"a".repeat(64), "old", false)), &want());
        assert_eq!(plan, KeyPlan::Rename { from: "old".into() });
    }
}
