// Why this shim exists: libmosquitto's public header does not include mqtt_protocol.h,
// where the MQTT v5 property and subscription-option constants live, and Swift cannot
// walk a C property list efficiently without a few helpers. Everything C-shaped that the
// mesh needs is declared here, once; only the `Mosquitto` target imports this module.
#ifndef MOSQUITTO_MESH_SHIM_H
#define MOSQUITTO_MESH_SHIM_H

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

/// Copies the properties of a received PUBLISH that a re-published copy must carry
/// (payload format, message expiry as received — so it keeps counting down — content type,
/// response topic, correlation data and every user property, in order, duplicates
/// included). Subscription identifiers and topic aliases belong to the receiving
/// connection and are dropped. A user property whose key equals `marker_key` is not
/// copied and `*marker_found` reports whether one was seen; nor is any whose key starts
/// with `reserved_prefix` (the mesh's own namespace, `mesh:`). The value of the first user
/// property named `capture_key` (if given) is copied into `capture_buf` when shorter than
/// `capture_cap`, and `*captured` says so: one pass serves both the copy and the reading of a
/// marker. Returns MOSQ_ERR_SUCCESS or the first error from libmosquitto (the partial list
/// is freed on error).
static inline int mesh_copy_publish_properties(const mosquitto_property *in,
                                               mosquitto_property **out,
                                               const char *marker_key,
                                               const char *reserved_prefix,
                                               bool *marker_found,
                                               const char *capture_key,
                                               char *capture_buf,
                                               size_t capture_cap,
                                               bool *captured)
{
    *out = NULL;
    if (marker_found) { *marker_found = false; }
    if (captured) { *captured = false; }
    int rc = MOSQ_ERR_SUCCESS;
    for (const mosquitto_property *p = in; p != NULL && rc == MOSQ_ERR_SUCCESS; p = mosquitto_property_next(p)) {
        int id = mosquitto_property_identifier(p);
        switch (id) {
        case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR: {
            uint8_t v = 0;
            mosquitto_property_read_byte(p, id, &v, false);
            rc = mosquitto_property_add_byte(out, id, v);
            break;
        }
        case MQTT_PROP_MESSAGE_EXPIRY_INTERVAL: {
            uint32_t v = 0;
            mosquitto_property_read_int32(p, id, &v, false);
            rc = mosquitto_property_add_int32(out, id, v);
            break;
        }
        case MQTT_PROP_CONTENT_TYPE:
        case MQTT_PROP_RESPONSE_TOPIC: {
            char *v = NULL;
            if (mosquitto_property_read_string(p, id, &v, false) != NULL && v != NULL) {
                rc = mosquitto_property_add_string(out, id, v);
            }
            free(v);
            break;
        }
        case MQTT_PROP_CORRELATION_DATA: {
            void *v = NULL;
            uint16_t len = 0;
            if (mosquitto_property_read_binary(p, id, &v, &len, false) != NULL) {
                rc = mosquitto_property_add_binary(out, id, v, len);
            }
            free(v);
            break;
        }
        case MQTT_PROP_USER_PROPERTY: {
            char *k = NULL;
            char *v = NULL;
            if (mosquitto_property_read_string_pair(p, id, &k, &v, false) != NULL && k != NULL && v != NULL) {
                if (capture_key != NULL && captured != NULL && !*captured && strcmp(k, capture_key) == 0 && strlen(v) < capture_cap) {
                    strcpy(capture_buf, v);
                    *captured = true;
                }
                if (marker_key != NULL && strcmp(k, marker_key) == 0) {
                    if (marker_found) { *marker_found = true; }
                } else if (reserved_prefix != NULL && strncmp(k, reserved_prefix, strlen(reserved_prefix)) == 0) {
                    // The mesh's own markers: never taken from (or passed on for) a client.
                } else {
                    rc = mosquitto_property_add_string_pair(out, id, k, v);
                }
            }
            free(k);
            free(v);
            break;
        }
        default:
            // Subscription identifier, topic alias: meaningful only on the connection that
            // delivered the message; never copied.
            break;
        }
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        mosquitto_property_free_all(out);
        *out = NULL;
    }
    return rc;
}

/// Swift cannot name the untyped C enum values of mqtt_protocol.h as Int32 without casts
/// at every use; these constants give them one spelling.
static const int mesh_sub_opt_no_local = MQTT_SUB_OPT_NO_LOCAL;
static const int mesh_sub_opt_retain_as_published = MQTT_SUB_OPT_RETAIN_AS_PUBLISHED;
static const int mesh_sub_opt_send_retain_never = MQTT_SUB_OPT_SEND_RETAIN_NEVER;
static const int mesh_prop_session_expiry_interval = MQTT_PROP_SESSION_EXPIRY_INTERVAL;
static const int mesh_prop_user_property = MQTT_PROP_USER_PROPERTY;
static const int mesh_prop_message_expiry_interval = MQTT_PROP_MESSAGE_EXPIRY_INTERVAL;
static const int mesh_prop_content_type = MQTT_PROP_CONTENT_TYPE;
static const int mesh_prop_response_topic = MQTT_PROP_RESPONSE_TOPIC;
static const int mesh_prop_correlation_data = MQTT_PROP_CORRELATION_DATA;
static const int mesh_prop_payload_format_indicator = MQTT_PROP_PAYLOAD_FORMAT_INDICATOR;
static const int mesh_prop_topic_alias = MQTT_PROP_TOPIC_ALIAS;
static const int mesh_prop_topic_alias_maximum = MQTT_PROP_TOPIC_ALIAS_MAXIMUM;
static const int mesh_protocol_v5 = MQTT_PROTOCOL_V5;
static const int mesh_protocol_v311 = MQTT_PROTOCOL_V311;

/// Looks for the first user property named `key`. Returns 0 if there is none, 1 if there is
/// (its value copied into `buf`, NUL-terminated, when `buf` is given and the value is shorter
/// than `cap`), 2 if there is one whose value does not fit `buf`.
static inline int mesh_find_user_property(const mosquitto_property *in, const char *key, char *buf, size_t cap)
{
    for (const mosquitto_property *p = in; p != NULL; p = mosquitto_property_next(p)) {
        if (mosquitto_property_identifier(p) != MQTT_PROP_USER_PROPERTY) { continue; }
        char *name = NULL, *value = NULL;
        if (mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value, false) != NULL) {
            int found = 0;
            if (name != NULL && value != NULL && strcmp(name, key) == 0) {
                found = 1;
                if (buf != NULL) {
                    if (strlen(value) < cap) { strcpy(buf, value); } else { found = 2; }
                }
            }
            free(name);
            free(value);
            if (found) { return found; }
        }
    }
    return 0;
}

/// The Topic Alias Maximum of a CONNACK's properties; 0 (aliases not accepted) if absent.
static inline uint16_t mesh_topic_alias_maximum(const mosquitto_property *connack)
{
    uint16_t value = 0;
    if (connack != NULL) {
        mosquitto_property_read_int16(connack, MQTT_PROP_TOPIC_ALIAS_MAXIMUM, &value, false);
    }
    return value;
}

#endif
