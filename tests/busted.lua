-- Runs the busted specs (tests/lua/*_spec.lua) inside vlua itself:
--   build/vlua tests/busted.lua -o TAP tests/lua
require("busted.runner")({ standalone = false })
