//! MLflow's JSON is protobuf's JSON mapping: 64-bit integers may come as strings, and doubles
//! that JSON cannot hold (NaN, ±infinity) come as the strings "NaN", "Infinity", "-Infinity".
//! These helpers read both forms and write the second.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Int(i64),
    Float(f64),
    Text(String),
}

pub(crate) fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Number>::deserialize(d)? {
        None => Ok(None),
        Some(Number::Int(n)) => Ok(Some(n)),
        Some(Number::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => Ok(Some(f as i64)),
        Some(Number::Text(s)) => s.parse().map(Some).map_err(|_| de::Error::custom(format!("not an integer: {s:?}"))),
        Some(Number::Float(f)) => Err(de::Error::custom(format!("not an integer: {f}"))),
    }
}

pub(crate) fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    opt_i64(d)?.ok_or_else(|| de::Error::custom("missing integer"))
}

pub(crate) fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match Number::deserialize(d)? {
        Number::Int(n) => Ok(n as f64),
        Number::Float(f) => Ok(f),
        Number::Text(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => s.parse().map_err(|_| de::Error::custom(format!("not a number: {s:?}"))),
        },
    }
}

pub(crate) fn write_f64<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_nan() {
        s.serialize_str("NaN")
    } else if v.is_infinite() {
        s.serialize_str(if *v > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        s.serialize_f64(*v)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct M {
        #[serde(deserialize_with = "super::f64", serialize_with = "super::write_f64")]
        v: f64,
        #[serde(default, deserialize_with = "super::opt_i64")]
        t: Option<i64>,
    }

    fn read(json: &str) -> M {
        serde_json::from_str(json).expect(json)
    }

    #[test]
    fn reads_both_forms() {
        assert_eq!(read(r#"{"v": 1.5, "t": 7}"#).t, Some(7));
        assert_eq!(read(r#"{"v": 2, "t": "1795410048927"}"#).t, Some(1_795_410_048_927));
        assert!(read(r#"{"v": "NaN"}"#).v.is_nan());
        assert_eq!(read(r#"{"v": "-Infinity"}"#).v, f64::NEG_INFINITY);
        assert_eq!(read(r#"{"v": 3}"#).t, None);
        assert!(serde_json::from_str::<M>(r#"{"v": "x"}"#).is_err());
    }

    #[test]
    fn writes_what_json_cannot_hold_as_strings() {
        let j = |v| serde_json::to_string(&M { v, t: None }).expect("json");
        assert_eq!(j(f64::NAN), r#"{"v":"NaN","t":null}"#);
        assert_eq!(j(f64::INFINITY), r#"{"v":"Infinity","t":null}"#);
        assert_eq!(j(0.25), r#"{"v":0.25,"t":null}"#);
    }
}
