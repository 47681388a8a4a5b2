//! Request field types that carry their rules into the OpenAPI document.
//!
//! The document must say what the server enforces (an id is a UUID, an amount is at least 1, a code is six
//! digits), so a client can validate before sending and a fuzzer can tell valid input from invalid. These types
//! publish the rule in their schema but take any JSON value of the right type: the route then checks the rule
//! itself and refuses a breach with its own precise code and the field named (`invalid_id`, `invalid_amount`,
//! `invalid_code_format`…), which poem-openapi's validators cannot do — they answer every breach with one
//! generic parse error.

use std::{borrow::Cow, ops::Deref};

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
};
use serde_json::Value;

/// The pattern of an id (a UUID), as the document states it.
pub const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

macro_rules! documented_string {
    ($(#[$doc:meta])* $name:ident, $schema_name:literal, $redacted:literal, |$schema:ident| $fill:block) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                if $redacted {
                    formatter.write_str("[redacted]")
                } else {
                    std::fmt::Debug::fmt(&self.0, formatter)
                }
            }
        }

        impl Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> Cow<'static, str> {
                $schema_name.into()
            }

            fn schema_ref() -> MetaSchemaRef {
                let mut $schema = MetaSchema::new("string");
                $fill
                MetaSchemaRef::Inline(Box::new($schema))
            }

            fn as_raw_value(&self) -> Option<&Self> {
                Some(self)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
                Box::new(self.as_raw_value().into_iter())
            }
        }

        impl ParseFromJSON for $name {
            fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
                match value {
                    Some(Value::String(text)) => Ok(Self(text)),
                    other => Err(ParseError::expected_type(other.unwrap_or_default())),
                }
            }
        }

        impl ToJSON for $name {
            fn to_json(&self) -> Option<Value> {
                Some(Value::String(self.0.clone()))
            }
        }
    };
}

documented_string!(
    /// An id: a UUID (`invalid_id` otherwise).
    IdText,
    "string(uuid)",
    false,
    |schema| {
        schema.format = Some("uuid");
        schema.pattern = Some(UUID_PATTERN.to_owned());
    }
);

documented_string!(
    /// A one-time code: six digits (`invalid_code_format` otherwise).
    CodeText,
    "string(code)",
    true,
    |schema| {
        schema.pattern = Some("^[0-9]{6}$".to_owned());
        schema.min_length = Some(6);
        schema.max_length = Some(6);
    }
);

documented_string!(
    /// A new password: 8 to 128 characters (`weak_password` otherwise).
    NewPasswordText,
    "string(password)",
    true,
    |schema| {
        schema.format = Some("password");
        schema.min_length = Some(8);
        schema.max_length = Some(128);
    }
);

/// An amount in minor units (kobo, cents): a whole number from 1 to `AMOUNT_MINOR_MAX` (`invalid_amount` or
/// `amount_too_large` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct MinorUnits(pub i64);

impl Type for MinorUnits {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "integer(minor_units)".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new_with_format("integer", "int64");
        schema.minimum = Some(1.0);
        // Exact in an f64: 10^13 < 2^53.
        schema.maximum = Some(paycore_jobs::money::AMOUNT_MINOR_MAX as f64);
        MetaSchemaRef::Inline(Box::new(schema))
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for MinorUnits {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let value = value.unwrap_or_default();
        match value.as_i64() {
            Some(minor) => Ok(Self(minor)),
            None => Err(ParseError::expected_type(value)),
        }
    }
}

impl ToJSON for MinorUnits {
    fn to_json(&self) -> Option<Value> {
        Some(Value::from(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_states_the_rule_but_parsing_leaves_it_to_the_route() {
        let MetaSchemaRef::Inline(schema) = IdText::schema_ref() else {
            panic!("inline schema");
        };
        assert_eq!(schema.format, Some("uuid"));
        assert_eq!(
            IdText::parse_from_json(Some(Value::from("not-a-uuid")))
                .ok()
                .map(|id| id.0),
            Some("not-a-uuid".to_owned())
        );
        assert!(IdText::parse_from_json(Some(Value::from(123))).is_err());
        assert_eq!(
            MinorUnits::parse_from_json(Some(Value::from(0)))
                .ok()
                .map(|m| m.0),
            Some(0)
        );
        assert!(MinorUnits::parse_from_json(Some(Value::from(1.5))).is_err());
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        assert_eq!(format!("{:?}", CodeText("123456".into())), "[redacted]");
        assert_eq!(
            format!("{:?}", NewPasswordText("hunter22".into())),
            "[redacted]"
        );
    }
}
