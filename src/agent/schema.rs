//! Function schemas for the LLM, generated from the same Rust types the
//! builtin planner uses ([`ReadCall`], [`Mutation`]), so the two can never
//! disagree on a tool's name or arguments.

use schemars::schema_for;
use serde_json::{Value, json};

use crate::tools::{Mutation, ReadCall};

/// Whether a tool only reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolKind {
    ReadOnly,
    /// Becomes a plan step; never executed by the agent.
    Mutating,
}

/// One function the model may call.
#[derive(Clone, Debug)]
pub struct ToolSpec {
    pub name: String,
    pub kind: ToolKind,
    /// OpenAI `tools[]` entry.
    pub function: Value,
}

/// All tools: read-only first, then plan-only mutations.
pub fn tool_specs() -> Vec<ToolSpec> {
    let mut out = specs(
        serde_json::to_value(schema_for!(ReadCall)).unwrap_or_default(),
        ToolKind::ReadOnly,
    );
    out.extend(specs(
        serde_json::to_value(schema_for!(Mutation)).unwrap_or_default(),
        ToolKind::Mutating,
    ));
    out
}

fn specs(root: Value, kind: ToolKind) -> Vec<ToolSpec> {
    let defs = root.get("$defs").cloned().unwrap_or(json!({}));
    let variants = root
        .get("oneOf")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    variants
        .into_iter()
        .filter_map(|mut v| {
            let props = v.get_mut("properties")?.as_object_mut()?;
            let tool = props.remove("tool")?;
            let name = tool
                .get("const")
                .or_else(|| tool.get("enum").and_then(|e| e.get(0)))?
                .as_str()?
                .to_string();
            if let Some(req) = v.get_mut("required").and_then(Value::as_array_mut) {
                req.retain(|r| r != "tool");
            }
            let mut description = v.get("description").and_then(Value::as_str).unwrap_or("").to_string();
            if kind == ToolKind::Mutating {
                description.push_str(
                    " PLAN-ONLY: calling this does not change the cluster; it adds a step to a plan that a human must approve.",
                );
            }
            let mut params = json!({"type": "object", "properties": v["properties"].clone()});
            if let Some(r) = v.get("required") {
                params["required"] = r.clone();
            }
            inline_refs(&mut params, &defs);
            Some(ToolSpec {
                function: json!({
                    "type": "function",
                    "function": {"name": name, "description": description, "parameters": params},
                }),
                name,
                kind,
            })
        })
        .collect()
}

/// Replaces `{"$ref": "#/$defs/X"}` with the definition (servers differ in `$ref` support).
fn inline_refs(v: &mut Value, defs: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref")
                && let Some(name) = r.strip_prefix("#/$defs/")
                && let Some(def) = defs.get(name)
            {
                let mut def = def.clone();
                inline_refs(&mut def, defs);
                *v = def;
                return;
            }
            for x in m.values_mut() {
                inline_refs(x, defs);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| inline_refs(x, defs)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_tool_has_a_schema() {
        let specs = tool_specs();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        for n in [
            "list_pods",
            "get_pod_details",
            "get_pod_logs",
            "list_deployments",
            "get_deployment_status",
            "list_services",
            "describe_resource",
            "get_events",
            "get_cluster_health",
            "find_workload",
            "diagnose",
            "scale_deployment",
            "rollout_restart",
            "delete_pod",
            "create_configmap",
            "patch_resource",
            "apply_manifest",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        let scale = specs.iter().find(|s| s.name == "scale_deployment").unwrap();
        assert_eq!(scale.kind, ToolKind::Mutating);
        let params = &scale.function["function"]["parameters"];
        assert!(params["properties"]["replicas"].is_object(), "{params}");
        assert!(
            !params["properties"]
                .as_object()
                .unwrap()
                .contains_key("tool")
        );
        assert!(
            params["required"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == "name")
        );
        assert!(!params.to_string().contains("$ref"), "{params}");
        let logs = specs.iter().find(|s| s.name == "get_pod_logs").unwrap();
        assert_eq!(logs.kind, ToolKind::ReadOnly);
        assert!(logs.function["function"]["parameters"]["properties"]["tail_lines"].is_object());
    }
}
