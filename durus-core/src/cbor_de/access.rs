//! How serde walks the parts of a CBOR item: an array's items, a map's
//! entries, an enum's variant, a byte string as a sequence, and a tag's
//! number and value.

use super::{Deserializer, Error, Head};
use serde::de::{self, Deserializer as _, IntoDeserializer, Visitor};

/// The items of an array or the entries of a map: `left` of them, or up to
/// a break when `None`. Also the access to an enum's variant.
pub(super) struct Access<'a, 'de> {
    pub(super) de: &'a mut Deserializer<'de>,
    pub(super) left: Option<usize>,
}

impl<'de> Access<'_, 'de> {
    /// True when there is another item, counting it.
    #[inline]
    fn more(&mut self) -> Result<bool, Error> {
        match self.left {
            Some(0) => Ok(false),
            Some(ref mut n) => {
                *n -= 1;
                Ok(true)
            }
            None => match self.de.peek()? {
                (Head::Break, len) => {
                    self.de.pos += len;
                    Ok(false)
                }
                _ => Ok(true),
            },
        }
    }
}

impl<'de> de::SeqAccess<'de> for Access<'_, 'de> {
    type Error = Error;

    #[inline]
    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if !self.more()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        self.left
    }
}

impl<'de> de::MapAccess<'de> for Access<'_, 'de> {
    type Error = Error;

    #[inline]
    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if !self.more()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }

    #[inline]
    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        self.left
    }
}

impl<'de> de::EnumAccess<'de> for Access<'_, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: de::DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let variant = seed.deserialize(&mut *self.de)?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for Access<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(&mut *self.de)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.de.deserialize_any(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.de.deserialize_any(visitor)
    }
}

/// A byte string read as a sequence of `u8`s.
pub(super) struct BytesAccess {
    pub(super) bytes: Vec<u8>,
    pub(super) next: usize,
}

impl<'de> de::SeqAccess<'de> for BytesAccess {
    type Error = Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(&byte) = self.bytes.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        seed.deserialize(byte.into_deserializer()).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.bytes.len().saturating_sub(self.next))
    }
}

/// ciborium's tag protocol: an enum named `"@@TAG@@"` whose variant is
/// `"@@TAGGED@@"` (a tuple of the tag and the item) or `"@@UNTAGGED@@"`
/// (a newtype of the item).
pub(super) struct TagAccess<'a, 'de> {
    parent: Option<&'a mut Deserializer<'de>>,
    /// How many times the tag side has been read: first the variant name,
    /// then the tag number.
    state: usize,
    tag: Option<u64>,
}

impl<'a, 'de> TagAccess<'a, 'de> {
    pub(super) fn new(parent: &'a mut Deserializer<'de>, tag: Option<u64>) -> Self {
        TagAccess {
            parent: Some(parent),
            state: 0,
            tag,
        }
    }

    fn parent(&mut self) -> Result<&'a mut Deserializer<'de>, Error> {
        self.parent
            .take()
            .ok_or_else(|| de::Error::custom("expected tag"))
    }
}

impl<'de> de::Deserializer<'de> for &mut TagAccess<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.state += 1;
        match (self.state, self.tag) {
            (1, Some(_)) => visitor.visit_str("@@TAGGED@@"),
            (1, None) => visitor.visit_str("@@UNTAGGED@@"),
            (_, Some(tag)) => visitor.visit_u64(tag),
            (_, None) => Err(de::Error::custom("expected tag")),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'a, 'de> de::EnumAccess<'de> for TagAccess<'a, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: de::DeserializeSeed<'de>>(
        mut self,
        seed: V,
    ) -> Result<(V::Value, Self), Error> {
        let variant = seed.deserialize(&mut self)?;
        Ok((variant, self))
    }
}

impl<'a, 'de> de::VariantAccess<'de> for TagAccess<'a, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Err(de::Error::custom("expected tag"))
    }

    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(
        mut self,
        seed: T,
    ) -> Result<T::Value, Error> {
        seed.deserialize(self.parent()?)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(self)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::custom("expected tag"))
    }
}

impl<'a, 'de> de::SeqAccess<'de> for TagAccess<'a, 'de> {
    type Error = Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.state < 2 {
            return seed.deserialize(&mut *self).map(Some);
        }
        match self.parent.take() {
            Some(parent) => seed.deserialize(parent).map(Some),
            None => Ok(None),
        }
    }
}
