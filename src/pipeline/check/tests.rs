use super::*;

fn run(text: &str) -> Result<Declaration, Vec<Diagnostic>> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(check_text("p.toml", text))
}

fn mistakes(text: &str) -> Vec<(usize, String)> {
    match run(text) {
        Ok(_) => Vec::new(),
        Err(d) => d.into_iter().map(|d| (d.line, d.key)).collect(),
    }
}

#[test]
fn the_builtin_declaration_checks_clean() {
    let builtin = crate::pipeline::builtin();
    let text = toml::to_string(&builtin).unwrap();
    match run(&text) {
        Ok(d) => assert_eq!(d, builtin),
        Err(d) => panic!(
            "{}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// Line numbers: the first line of the string is line 1.
const BROKEN: &str = r#"[[stream]]
name = "orders"
id_field = "order_id"
colour = "blue"
generator = "nope"

[[stream.field]]
name = "amount"
type = "float"
values = ["a"]

[[stream.field]]
name = "qty"
type = "int"
min = 10
max = 1

[[stream.field]]
name = "Bad-Name"
type = "bool"

[[stream.field]]
name = "weight"
type = 5

[[stream.derived]]
name = "total"
sql = "amount * * qty"

[[stream.expect]]
name = "known"
sql = "nosuch > 0"
action = "drop"

[[stream.expect]]
name = "numeric"
sql = "qty + 1"
action = "warn"

[[stream]]
name = "orders"
id_field = "id"

[[stream.field]]
name = "x"
type = "int"

[[stream.field]]
name = "x"
type = "string"

[[stream]]
name = "shop"
id_field = "id"

[[stream.field]]
name = "amount"
type = "float"

[[fact]]
name = "fact_a"
stream = "ghost"
sql = "SELECT date FROM silver"

[[fact]]
name = "fact_b"
stream = "shop"
sql = "SELECT date, nosuch FROM silver"

[[dashboard]]
name = "dash"
stream = "ghost"
window_minutes = 60
sql = "SELECT count(*) AS n FROM w"

[[alert]]
name = "big"
stream = "shop"
window_minutes = 60
threshold = 1.0
severity = "high"
id = "{rule}:{subject}:{when}"
sql = "SELECT amount AS value, [id] AS triggering_ids, 'x' AS detail FROM w"
"#;

#[test]
fn a_broken_declaration_gives_one_line_per_mistake() {
    let got = mistakes(BROKEN);
    let want: Vec<(usize, &str)> = vec![
        (4, "stream[orders].colour"),
        (5, "stream[orders].generator"),
        (10, "stream[orders].field[amount].values"),
        (15, "stream[orders].field[qty].min"),
        (19, "stream[orders].field[Bad-Name].name"),
        (24, "stream[orders].field[weight].type"),
        (28, "stream[orders].derived[total].sql"),
        (32, "stream[orders].expect[known].sql"),
        (37, "stream[orders].expect[numeric].sql"),
        (41, "stream[orders].name"),
        (49, "stream[orders].field[x].name"),
        (62, "fact[fact_a].stream"),
        (68, "fact[fact_b].sql"),
        (72, "dashboard[dash].stream"),
        (82, "alert[big].id"),
        (83, "alert[big].sql"),
    ];
    let want: Vec<(usize, String)> = want.into_iter().map(|(l, k)| (l, k.to_string())).collect();
    assert_eq!(got, want, "{:#?}", run(BROKEN).err());
}

#[test]
fn no_input_panics() {
    for text in [
        "",
        "stream = 5",
        "[[stream]]",
        "[stream]\nname = \"a\"",
        "stream = [1, 2]",
        "[[stream]]\nname = 5\nid_field = []\n[[stream.field]]\n[[stream.field]]\nname = \"x\"\ntype = \"int\"\nvalues = []",
        "[[fact]]\nname = \"f\"\nstream = \"s\"\nsql = \"DROP TABLE silver\"",
        "x = \"\u{e9}\"\n[[",
        "[[stream]]\nname = \"s\"\nid_field = \"id\"\n[[stream.derived]]\nname = \"d\"\nsql = \"1) FROM clean; DROP TABLE clean; SELECT (1\"",
        "[[stream]]\nname = \"s\"\nid_field = \"id\"\n[[fact]]\nname = \"f\"\nstream = \"s\"\nsql = \"CREATE TABLE t AS SELECT date FROM silver\"",
    ] {
        assert!(run(text).is_err(), "{text}");
    }
}

#[test]
fn syntax_errors_and_unknown_top_level_keys_have_their_line() {
    assert_eq!(mistakes("\n\nstream = [[\n"), [(3, "toml".to_string())]);
    let got = mistakes("colour = 1\n[[stream]]\nname = \"s\"\nid_field = \"id\"\n");
    assert_eq!(got, [(1, "colour".to_string())]);
    assert_eq!(mistakes("stream = 5"), [(1, "stream".to_string())]);
    assert_eq!(mistakes(""), [(1, "stream".to_string())]);
}

#[test]
fn alert_ids_need_known_placeholders_and_the_subject() {
    assert!(meaning::id_template("{rule}:{subject}:{run}").is_empty());
    assert!(meaning::id_template("{stream}-{subject}").is_empty());
    assert_eq!(meaning::id_template("{rule}").len(), 1);
    assert_eq!(meaning::id_template("{subject}{oops}").len(), 1);
    assert_eq!(meaning::id_template("{subject}{").len(), 1);
}

#[test]
fn names_are_lower_case_identifiers() {
    assert!(meaning::bad_identifier("orders_2").is_none());
    assert!(meaning::bad_identifier("_x").is_none());
    for bad in [
        "",
        "2x",
        "Orders",
        "a-b",
        "a b",
        "a/b",
        "é",
        &"a".repeat(65),
    ] {
        assert!(meaning::bad_identifier(bad).is_some(), "{bad}");
    }
}
