//! Command templates: minijinja with every `{{ value }}` shell-quoted unless the
//! template says `{{ value | raw }}`, and undefined variables an error.

/// A minijinja environment whose `{{ }}` output is shell-quoted unless `| raw`.
pub fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_formatter(|out, _state, value| {
        let s = value.to_string();
        if value.is_safe() {
            out.write_str(&s)?;
        } else {
            out.write_str(&crate::exec::shell::quote(&s))?;
        }
        Ok(())
    });
    env.add_filter("raw", |v: minijinja::Value| {
        minijinja::Value::from_safe_string(v.to_string())
    });
    env
}

/// Renders a command template with a context.
pub fn render(template: &str, ctx: &minijinja::Value) -> anyhow::Result<String> {
    let env = template_env();
    let t = env.template_from_str(template)?;
    Ok(t.render(ctx)?)
}
