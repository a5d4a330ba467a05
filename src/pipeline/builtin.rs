//! The built-in declaration: the five seed streams (their generators' schemas and derived
//! columns), the seven gold facts, the eight dashboards (five of SPEC, three time series) and the five alert rules of SPEC — what
//! runs when no pipeline file is given, and what `lakepipe pipeline show` prints as a file to
//! start from.

use super::declaration::{
    AlertDecl, DashboardDecl, Declaration, DerivedDecl, FactDecl, FieldDecl, FieldType, Number,
    SpreadDecl, StreamDecl, Values,
};
use crate::layers::batch::gold::SEED_FACTS;
use crate::layers::clean::seed_derived;
use crate::layers::serving::alerts::SEED_RULES;
use crate::layers::serving::dashboards::SEED_DASHBOARDS;
use crate::sources::stream::{Field, Kind, Spread, StreamSpec, seed_streams};

/// The built-in declaration.
pub fn builtin() -> Declaration {
    Declaration {
        streams: seed_streams().iter().map(|s| stream(s)).collect(),
        facts: SEED_FACTS
            .iter()
            .map(|f| FactDecl {
                name: f.name.into(),
                stream: f.stream.into(),
                sql: dedent(f.sql),
            })
            .collect(),
        dashboards: SEED_DASHBOARDS
            .iter()
            .map(|d| DashboardDecl {
                name: d.name.into(),
                stream: d.stream.into(),
                window_minutes: d.minutes,
                sql: dedent(d.sql),
            })
            .collect(),
        alerts: SEED_RULES
            .iter()
            .map(|r| AlertDecl {
                name: r.name.into(),
                stream: r.stream.into(),
                window_minutes: r.minutes,
                threshold: r.threshold,
                severity: r.severity.into(),
                id: r.id.into(),
                sql: dedent(r.sql),
            })
            .collect(),
    }
}

fn stream(s: &StreamSpec) -> StreamDecl {
    StreamDecl {
        name: s.name.into(),
        title: Some(s.title.into()),
        id_field: s.id_field.into(),
        event_time_field: s.event_time_field.into(),
        generator: s.generate.is_some().then(|| s.name.to_string()),
        fields: s.fields.iter().map(field).collect(),
        expectations: Vec::new(),
        derived: seed_derived(s.name)
            .into_iter()
            .map(|(name, sql)| DerivedDecl { name, sql })
            .collect(),
    }
}

fn field(f: &Field) -> FieldDecl {
    let strings = |set: &[&str]| Some(Values::Strings(set.iter().map(|s| s.to_string()).collect()));
    let (ty, values, min, max) = match f.kind {
        Kind::Str => (FieldType::String, None, None, None),
        Kind::Enum(set) => (FieldType::String, strings(set), None, None),
        Kind::IntEnum(set) => (FieldType::Int, Some(Values::Ints(set.to_vec())), None, None),
        Kind::Int { min, max } => (
            FieldType::Int,
            None,
            Some(Number::Int(min)),
            Some(Number::Int(max)),
        ),
        Kind::Float { min, max } => (
            FieldType::Float,
            None,
            Some(Number::Float(min)),
            Some(Number::Float(max)),
        ),
        Kind::Bool => (FieldType::Bool, None, None, None),
        Kind::Tags(set) => (FieldType::Tags, strings(set), None, None),
    };
    FieldDecl {
        name: f.name.into(),
        ty,
        nullable: f.nullable,
        values,
        min,
        max,
        spread: match f.spread {
            Spread::Repeated => SpreadDecl::Repeated,
            Spread::Distinct => SpreadDecl::Distinct,
            Spread::Random => SpreadDecl::Random,
        },
    }
}

/// SQL as written in the Rust source, without the indentation of the lines after the first
/// (a file to start from reads better; SQL does not care).
fn dedent(sql: &str) -> String {
    let mut lines = sql.lines();
    let first = lines.next().unwrap_or_default().trim_end().to_string();
    let rest: Vec<&str> = lines.collect();
    let indent = rest
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = first;
    for l in rest {
        out.push('\n');
        out.push_str("  ");
        out.push_str(l.get(indent..).unwrap_or("").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_declaration_reads_back_from_its_toml_unchanged() {
        let d = builtin();
        let text = toml::to_string(&d).unwrap();
        assert_eq!(toml::from_str::<Declaration>(&text).unwrap(), d);
        assert_eq!(d.streams.len(), 5);
        assert_eq!(
            (d.facts.len(), d.dashboards.len(), d.alerts.len()),
            (7, 8, 5)
        );
        // Every seed stream keeps its generator, fields and derived columns.
        let fin = d
            .streams
            .iter()
            .find(|s| s.name == "financial_transactions")
            .unwrap();
        assert_eq!(fin.generator.as_deref(), Some("financial_transactions"));
        assert_eq!(fin.fields.len(), 15);
        assert_eq!(fin.derived.len(), 2);
    }

    #[test]
    fn dedent_keeps_the_first_line_and_relative_indentation() {
        assert_eq!(
            dedent("SELECT a,\n              b\n                FROM c"),
            "SELECT a,\n  b\n    FROM c"
        );
        assert_eq!(dedent("SELECT 1"), "SELECT 1");
    }
}
