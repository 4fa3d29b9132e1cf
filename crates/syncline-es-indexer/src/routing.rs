//! Where an event's document lives: the alias `<prefix><entity_type>` and the concrete
//! index behind it.
//!
//! The first concrete index has the fixed name `<alias>-000001` rather than a timestamp:
//! when two indexer instances bootstrap the same alias at once they both try to create
//! the same index, one wins and the other gets `resource_already_exists_exception`, which
//! is harmless. With timestamped names both would succeed and the alias would end up on
//! two indexes. A rebuild creates the next generation (`-000002`, ...) and swaps the alias.

/// The alias that every write for `entity_type` goes through.
pub fn alias_name(prefix: &str, entity_type: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + entity_type.len());
    s.push_str(prefix);
    s.push_str(entity_type);
    s
}

/// The concrete index of generation `generation` behind `alias`.
pub fn index_name(alias: &str, generation: u32) -> String {
    format!("{alias}-{generation:06}")
}

/// The concrete index the indexer creates when the alias does not exist yet.
pub fn initial_index_name(alias: &str) -> String {
    index_name(alias, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(alias_name("", "product"), "product");
        assert_eq!(alias_name("shop-", "product"), "shop-product");
        assert_eq!(initial_index_name("shop-product"), "shop-product-000001");
        assert_eq!(index_name("a", 12), "a-000012");
    }
}
