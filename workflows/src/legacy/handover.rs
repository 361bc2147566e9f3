//! What one run of a listing's workflow hands to the next (continue-as-new): the start input,
//! and the packed forms of the listing and its orders. A small state travels inline; a large
//! one leaves its orders in the store, cut into parts. The orders, the bulk of it, travel in
//! the binary form of [`order_codec`]; the rest of the listing as gzip-compressed JSON.

use super::machine::{Listing, OrderEntry};
use super::order_codec;
use sellwindow_domain::*;
use std::collections::BTreeMap;

/// How a listing's workflow starts: fresh from its spec, or carrying a previous run's state
/// (continue-as-new). A plain `ListingSpec` still deserializes, so old histories replay.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ListingStart {
    #[serde(flatten)]
    pub spec: ListingSpec,
    /// The previous run's state, gzip-compressed JSON in base64: a hand-over must stay well
    /// under the server's 2 MB payload limit. Without its orders, which travel in
    /// `carried_orders` or the store (starts written by the first releases carry the whole
    /// listing here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried: Option<String>,
    /// The orders in the binary form of [`order_codec`], in base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried_orders: Option<String>,
    /// Set when the orders were too many to carry: they wait in the store, packed the same
    /// way and cut into parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders_in_store: Option<StoredOrders>,
    /// The largest state carried inline, if not [`INLINE_HANDOVER_MAX`] (deployment tuning;
    /// tests set 0 to send every hand-over through the store). Passed on to every next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_max: Option<u32>,
    /// Payment results that arrived while the previous run handed over: this run applies them
    /// before any newer one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred_payments: Vec<PaymentResult>,
}

/// Where a hand-over left its orders.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredOrders {
    pub token: String,
    pub parts: u32,
    /// How many orders the parts hold (checked on arrival).
    pub orders: u32,
}

/// The largest state carried inline (base64 characters): below the SDK's 512 KiB payload
/// warning and far below the server's 2 MB limit, whatever else the input holds.
pub const INLINE_HANDOVER_MAX: usize = 400_000;
/// Characters per stored hand-over part (each part is one activity's result).
pub const HANDOVER_PART_CHARS: usize = 480_000;

pub type Orders = BTreeMap<OrderId, OrderEntry>;

fn gzip_base64(json: &[u8]) -> String {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(json).expect("writing to memory");
    let packed = gz.finish().expect("writing to memory");
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, packed)
}

fn gunzip_base64(packed: &str) -> Result<Vec<u8>, String> {
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, packed)
        .map_err(|e| format!("carried state is not base64: {e}"))?;
    let mut json = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(bytes.as_slice()),
        &mut json,
    )
    .map_err(|e| format!("carried state does not decompress: {e}"))?;
    Ok(json)
}

fn pack<T: serde::Serialize>(value: &T) -> String {
    gzip_base64(&serde_json::to_vec(value).expect("the listing serializes"))
}

fn unpack<T: serde::de::DeserializeOwned>(packed: &str) -> Result<T, String> {
    serde_json::from_slice(&gunzip_base64(packed)?)
        .map_err(|e| format!("carried state does not parse: {e}"))
}

fn pack_orders(orders: &Orders) -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        order_codec::encode(orders),
    )
}

fn unpack_orders(packed: &str) -> Result<Orders, String> {
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, packed)
        .map_err(|e| format!("carried orders are not base64: {e}"))?;
    order_codec::decode(&bytes)
}

impl From<ListingSpec> for ListingStart {
    fn from(spec: ListingSpec) -> Self {
        Self {
            spec,
            carried: None,
            carried_orders: None,
            orders_in_store: None,
            inline_max: None,
            deferred_payments: Vec::new(),
        }
    }
}

impl ListingStart {
    /// The whole listing, carried inline whatever its size.
    pub fn carrying(listing: &Listing) -> Self {
        Self {
            carried: Some(pack(&listing.without_orders())),
            carried_orders: Some(pack_orders(&listing.orders)),
            ..Self::from(listing.spec.clone())
        }
    }

    /// A hand-over: inline while the state is small; otherwise the listing without its orders,
    /// and the orders as parts for the store under `token`.
    pub fn handing_over(
        listing: &Listing,
        token: &str,
        inline_max: Option<u32>,
    ) -> (Self, Vec<String>) {
        let limit = inline_max.map_or(INLINE_HANDOVER_MAX, |m| m as usize);
        let rest = pack(&listing.without_orders());
        let orders = pack_orders(&listing.orders);
        let base = Self {
            carried: Some(rest),
            inline_max,
            ..Self::from(listing.spec.clone())
        };
        if base.carried.as_ref().map_or(0, String::len) + orders.len() <= limit {
            let inline = Self {
                carried_orders: Some(orders),
                ..base
            };
            return (inline, Vec::new());
        }
        let parts: Vec<String> = orders
            .as_bytes()
            .chunks(HANDOVER_PART_CHARS)
            .map(|c| String::from_utf8(c.to_vec()).expect("base64 is ASCII"))
            .collect();
        let start = Self {
            orders_in_store: Some(StoredOrders {
                token: token.to_string(),
                parts: parts.len() as u32,
                orders: listing.orders.len() as u32,
            }),
            ..base
        };
        (start, parts)
    }

    /// The listing this run starts from (without its orders when they are in the store).
    pub fn into_listing(self) -> Result<Listing, String> {
        let mut listing: Listing = match &self.carried {
            None => return Ok(Listing::new(self.spec)),
            Some(packed) => unpack(packed)?,
        };
        if let Some(orders) = &self.carried_orders {
            listing.orders = unpack_orders(orders)?;
        }
        Ok(listing)
    }

    /// Puts a listing's orders back together from their stored parts.
    pub fn orders_from_parts(stored: &StoredOrders, parts: &[String]) -> Result<Orders, String> {
        let orders = unpack_orders(&parts.concat())?;
        if orders.len() != stored.orders as usize {
            return Err(format!(
                "hand-over {} holds {} orders, {} expected",
                stored.token,
                orders.len(),
                stored.orders
            ));
        }
        Ok(orders)
    }
}
