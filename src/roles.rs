//! Who a caller is to radassist: the roles that bearer tokens (and, later, people) are given,
//! with the one mapping to and from their names in the configuration and the audit log.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A PACS or router: pushes studies, follows them.
    Pacs,
    /// Reads the worklist, claims, edits and signs.
    Radiologist,
    /// Compares drafts with signed reads.
    Qa,
    /// Everything, the models and jobs included.
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        Some(match text {
            "pacs" => Role::Pacs,
            "radiologist" => Role::Radiologist,
            "qa" => Role::Qa,
            "admin" => Role::Admin,
            _ => return None,
        })
    }

    /// The roles that may do something, admin included, as a reason lists them ("pacs, admin").
    pub fn allowed(roles: &[Role]) -> String {
        roles
            .iter()
            .map(|r| r.as_str())
            .chain(["admin"])
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Pacs => "pacs",
            Role::Radiologist => "radiologist",
            Role::Qa => "qa",
            Role::Admin => "admin",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn names_read_back_and_the_configuration_uses_them() {
        for role in [Role::Pacs, Role::Radiologist, Role::Qa, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            let parsed: Role = serde_json::from_str(&format!("\"{}\"", role.as_str())).unwrap();
            assert_eq!(parsed, role);
        }
        assert!(serde_json::from_str::<Role>("\"root\"").is_err());
    }
}
