//! `Body<T>`: the JSON request body every route takes, held to the types its schema documents.
//!
//! poem-openapi's own `Json<T>` is lenient where the schema is not: a field documented as a string also takes a
//! number or a boolean (`{"email": 123}` reads as the e-mail `"123"`). A client, a generated SDK or a fuzzer
//! reading the OpenAPI document must be able to trust it, so `Body<T>` first checks the JSON against the schema's
//! types — strings are strings, integers whole numbers, booleans booleans, objects and arrays what they say,
//! recursively — and answers `400 malformed_body` naming the field. Formats, lengths and business rules stay
//! with the route, which refuses them with their own precise codes.

use std::{
    any::TypeId,
    collections::{BTreeMap, HashMap},
    ops::Deref,
    sync::{Arc, OnceLock, RwLock},
};

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::{
    error::ParseRequestPayloadError,
    impl_apirequest_for_payload,
    payload::{ParsePayload, Payload},
    registry::{MetaSchema, MetaSchemaRef, Registry},
    types::{ParseFromJSON, Type},
};
use serde_json::Value;

use crate::error::FieldTypeError;

/// A JSON request body whose field types were checked against its documented schema.
#[derive(Debug, Clone)]
pub struct Body<T>(pub T);

impl<T> Deref for Body<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Type> Payload for Body<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        // `application/json` or `application/<anything>+json`, with or without parameters such as a charset.
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype == "json" || subtype.ends_with("+json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON + 'static> ParsePayload for Body<T> {
    const IS_REQUIRED: bool = T::IS_REQUIRED;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = Vec::<u8>::from_request(request, body).await?;
        let value = if data.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&data).map_err(|error| ParseRequestPayloadError {
                reason: error.to_string(),
            })?
        };
        let schema = schema_of::<T>();
        if let Err(mismatch) = schema.check(&value) {
            return Err(mismatch.into());
        }
        let value = T::parse_from_json(Some(value)).map_err(|error| ParseRequestPayloadError {
            reason: error.into_message(),
        })?;
        Ok(Self(value))
    }
}

impl_apirequest_for_payload!(Body<T>, T: ParseFromJSON + 'static);

/// A body type's schema with the named schemas it refers to.
struct Schema {
    root: MetaSchemaRef,
    named: BTreeMap<String, MetaSchema>,
}

/// Each body type's schema is gathered once per process.
fn schema_of<T: Type + 'static>() -> Arc<Schema> {
    static SCHEMAS: OnceLock<RwLock<HashMap<TypeId, Arc<Schema>>>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(Default::default);
    let id = TypeId::of::<T>();
    if let Some(schema) = schemas
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&id)
    {
        return Arc::clone(schema);
    }
    let mut registry = Registry::new();
    T::register(&mut registry);
    let schema = Arc::new(Schema {
        root: T::schema_ref(),
        named: registry.schemas,
    });
    schemas
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(id, Arc::clone(&schema));
    schema
}

impl Schema {
    fn check(&self, value: &Value) -> Result<(), FieldTypeError> {
        self.check_at(value, &self.root, String::new(), 0)
    }

    fn resolve<'a>(&'a self, schema: &'a MetaSchemaRef) -> Option<&'a MetaSchema> {
        match schema {
            MetaSchemaRef::Inline(schema) => Some(schema),
            MetaSchemaRef::Reference(name) => self.named.get(name),
        }
    }

    fn check_at(
        &self,
        value: &Value,
        schema: &MetaSchemaRef,
        path: String,
        depth: usize,
    ) -> Result<(), FieldTypeError> {
        // Null means "absent" to the parser, which decides whether that is allowed; schemas are not recursive
        // here, but a bound keeps a pathological one from recursing without end.
        let Some(schema) = self.resolve(schema) else {
            return Ok(());
        };
        if value.is_null() || depth > 32 {
            return Ok(());
        }
        for part in &schema.all_of {
            self.check_at(value, part, path.clone(), depth + 1)?;
        }
        let mismatch = |expected| {
            Err(FieldTypeError {
                field: path.clone(),
                expected,
            })
        };
        match schema.ty {
            "string" if !value.is_string() => mismatch("a string"),
            "integer" if !(value.is_i64() || value.is_u64()) => mismatch("a whole number"),
            "number" if !value.is_number() => mismatch("a number"),
            "boolean" if !value.is_boolean() => mismatch("true or false"),
            "array" => {
                let Value::Array(items) = value else {
                    return mismatch("an array");
                };
                if let Some(item_schema) = &schema.items {
                    for (index, item) in items.iter().enumerate() {
                        self.check_at(item, item_schema, format!("{path}[{index}]"), depth + 1)?;
                    }
                }
                Ok(())
            }
            "object" => {
                let Value::Object(fields) = value else {
                    return mismatch("an object");
                };
                for (name, field_schema) in &schema.properties {
                    if let Some(field) = fields.get(*name) {
                        let field_path = if path.is_empty() {
                            (*name).to_owned()
                        } else {
                            format!("{path}.{name}")
                        };
                        self.check_at(field, field_schema, field_path, depth + 1)?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::Object;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Object)]
    struct Inner {
        amount: i64,
    }

    #[derive(Debug, Object)]
    struct Outer {
        email: String,
        #[oai(nullable)]
        note: Option<String>,
        #[oai(nullable)]
        flag: Option<bool>,
        items: Vec<Inner>,
    }

    fn check(value: Value) -> Result<(), String> {
        schema_of::<Outer>()
            .check(&value)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn documented_types_pass_and_null_is_left_to_the_parser() {
        assert_eq!(
            check(json!({"email": "a@b.c", "note": null, "items": [{"amount": 5}]})),
            Ok(())
        );
    }

    #[test]
    fn a_number_or_boolean_where_a_string_is_documented_is_refused_by_name() {
        assert_eq!(
            check(json!({"email": 123, "items": []})),
            Err("`email` must be a string.".to_owned())
        );
        assert_eq!(
            check(json!({"email": "x", "note": true, "items": []})),
            Err("`note` must be a string.".to_owned())
        );
        assert_eq!(
            check(json!({"email": "x", "flag": "yes", "items": []})),
            Err("`flag` must be true or false.".to_owned())
        );
    }

    #[test]
    fn nested_fields_are_named_by_their_path() {
        assert_eq!(
            check(json!({"email": "x", "items": [{"amount": 1}, {"amount": 1.5}]})),
            Err("`items[1].amount` must be a whole number.".to_owned())
        );
        assert_eq!(
            check(json!({"email": "x", "items": {"amount": 1}})),
            Err("`items` must be an array.".to_owned())
        );
        assert_eq!(
            check(json!(["not", "an", "object"])),
            Err("The body must be an object.".to_owned())
        );
    }
}
