//! Deciding what a marked-comment upsert must do, from the comments found.

/// An issue comment that carries the marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MarkedComment {
    pub id: u64,
    pub body: String,
}

/// The requests an upsert needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpsertPlan {
    /// No comment carries the marker: create one.
    Create,
    /// Keep the oldest marked comment (`keep`), rewriting it when its body differs, and
    /// delete the other marked comments (left by replicas that raced).
    Keep {
        keep: u64,
        rewrite: bool,
        delete: Vec<u64>,
    },
}

/// Plans the upsert of `body` given every comment carrying the marker.
///
/// GitHub's comment ids grow with creation time, so the smallest id is the oldest.
pub(crate) fn plan_upsert(mut marked: Vec<MarkedComment>, body: &str) -> UpsertPlan {
    marked.sort_by_key(|c| c.id);
    marked.dedup_by_key(|c| c.id);
    let mut marked = marked.into_iter();
    match marked.next() {
        None => UpsertPlan::Create,
        Some(oldest) => UpsertPlan::Keep {
            keep: oldest.id,
            rewrite: oldest.body != body,
            delete: marked.map(|c| c.id).collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u64, body: &str) -> MarkedComment {
        MarkedComment {
            id,
            body: body.to_owned(),
        }
    }

    #[test]
    fn nothing_marked_means_create() {
        assert_eq!(plan_upsert(vec![], "b"), UpsertPlan::Create);
    }

    #[test]
    fn same_body_needs_no_rewrite() {
        assert_eq!(
            plan_upsert(vec![c(5, "b")], "b"),
            UpsertPlan::Keep {
                keep: 5,
                rewrite: false,
                delete: vec![]
            }
        );
    }

    #[test]
    fn different_body_is_rewritten() {
        assert_eq!(
            plan_upsert(vec![c(5, "old")], "new"),
            UpsertPlan::Keep {
                keep: 5,
                rewrite: true,
                delete: vec![]
            }
        );
    }

    #[test]
    fn oldest_is_kept_whatever_the_listing_order() {
        assert_eq!(
            plan_upsert(
                vec![c(30, "new"), c(10, "old"), c(20, "new"), c(10, "old")],
                "new"
            ),
            UpsertPlan::Keep {
                keep: 10,
                rewrite: true,
                delete: vec![20, 30]
            }
        );
    }
}
