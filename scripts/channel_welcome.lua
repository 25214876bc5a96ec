-- Channel welcome (渠道活码 + 欢迎语): a member who joins by scanning a channel code
-- (member.joined with data.channel) is tagged "channel:<code>" and welcomed with that
-- channel's message; codes without their own message get "welcome". The welcome answers
-- the member's own action, so it is a service message: it is sent at once, also at night
-- and past the marketing cap. The source is the first join's: re-joining through another
-- code welcomes again (with that code's message) but never changes the attribution.
-- Per channel (`hearth stats`, variants of campaign channel_welcome): members, converted
-- (first orders) and spend (net, whole yuan).
-- Owners: a new friend without an owner (no data.staff) is given one by the code she
-- scanned: a guide's card belongs to that guide's store team in turn (round-robin), the
-- other codes go to the guide with the fewest members (least-loaded). A member who joins
-- with data.staff keeps that guide.
-- See docs/modules/channel.md.
local channel = require "channel"

channel.define {
  name = "channel_welcome",
  welcome = {
    poster = "welcome_poster",     -- store poster
    live = "welcome_live",         -- live-stream code
    guide = "welcome_guide",       -- a shopping guide's personal card
    default = "welcome",
  },
  tag_prefix = "channel:",
  owner = {
    guide_card = { rule = "round_robin", staff = { "staff-li", "staff-wang", "staff-zhao" } },
    default = { rule = "least_loaded", staff = { "staff-li", "staff-wang", "staff-zhao" } },
  },
}
