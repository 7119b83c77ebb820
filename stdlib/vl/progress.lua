-- vl.progress — progress bars for long loops.
--
--   local progress = require "vl.progress"
--   local bar = progress(#loader, {desc = "train"})
--   for i = 1, n do
--     ...
--     bar:update(i, {loss = loss:item(), acc = acc})   -- position i of n, live metrics
--   end
--   bar:close()
--
--   for i, bar in progress.range(100, {desc = "eval"}) do ... end
--
-- On a terminal the bar is redrawn in place ("\r") at most 1/refresh times a
-- second (10 by default):
--   train:  45%|#########           | 450/1000 [00:12<00:14, 37.50it/s, loss=0.1234, acc=0.91]
-- Elsewhere (a log file, a pipe) a plain line is printed every `interval`
-- seconds (5 by default) and once more at close:
--   train: 450/1000 (45%) 00:12 elapsed, eta 00:14, 37.50 it/s, loss=0.1234 acc=0.91
--
-- Options: desc, out (a file or anything with :write; io.stderr by default),
-- tty (force the terminal mode on or off; by default vl.isatty(out)),
-- interval (seconds between plain lines), refresh (seconds between redraws),
-- width (characters of the bar), clock (a function giving seconds; default
-- vl.monotonic).
local vl = require "vl"

local fmt, floor, rep = string.format, math.floor, string.rep

local M = {}

local DEFAULT_INTERVAL = 5 -- seconds between plain lines when not on a terminal
local DEFAULT_REFRESH = 0.1 -- seconds between redraws on a terminal (10 per second)
local DEFAULT_WIDTH = 20 -- characters inside |...|

local Bar = {}
Bar.__index = Bar
M.Bar = Bar

-- "01:05", "1:02:03"; "?" for unknown.
local function hms(s)
  if s == nil or s ~= s or s == math.huge or s < 0 then return "?" end
  s = floor(s + 0.5)
  local h, m = floor(s / 3600), floor(s / 60) % 60
  if h > 0 then return fmt("%d:%02d:%02d", h, m, s % 60) end
  return fmt("%02d:%02d", m, s % 60)
end
M.format_time = hms

local function metric_str(v)
  if vl.is_tensor(v) then v = v:item() end
  if math.type(v) == "integer" then return tostring(v) end
  if type(v) == "number" then return fmt("%.4g", v) end
  return tostring(v)
end

local function is_file(f) return io.type(f) == "file" end

function M.new(total, opts)
  opts = opts or {}
  if total ~= nil and (type(total) ~= "number" or total < 0) then
    error(fmt("progress: total must be a non-negative number or nil, got %s", tostring(total)), 2)
  end
  local out = opts.out or io.stderr
  if type(out) ~= "table" and not is_file(out) and type(out) ~= "userdata" then
    error("progress: out must be a file or an object with a write method", 2)
  end
  local tty = opts.tty
  if tty == nil then tty = is_file(out) and vl.isatty(out) or false end
  local clock = opts.clock or vl.monotonic
  local now = clock()
  local self = setmetatable({
    total = total and math.tointeger(total) or total,
    desc = opts.desc,
    out = out,
    tty = tty,
    interval = opts.interval or DEFAULT_INTERVAL,
    refresh = opts.refresh or DEFAULT_REFRESH,
    width = opts.width or DEFAULT_WIDTH,
    clock = clock,
    n = 0,
    start = now,
    last = now, -- time of the last output
    printed = 0, -- characters of the last terminal line (to blank them)
    metrics = {},
    order = {},
    closed = false,
  }, Bar)
  if tty then self:_draw(now) end
  return self
end

setmetatable(M, { __call = function(_, total, opts) return M.new(total, opts) end })

-- Record metrics (kept until overwritten); their first-seen order is kept.
function Bar:set(metrics)
  if metrics == nil then return self end
  if type(metrics) ~= "table" then error("progress: metrics must be a table", 2) end
  local keys = {}
  for k in pairs(metrics) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    if self.metrics[k] == nil then self.order[#self.order + 1] = k end
    self.metrics[k] = metrics[k]
  end
  return self
end

function Bar:_metrics(sep)
  local parts = {}
  for _, k in ipairs(self.order) do parts[#parts + 1] = tostring(k) .. "=" .. metric_str(self.metrics[k]) end
  return table.concat(parts, sep)
end

function Bar:_rate(now)
  local el = now - self.start
  if el <= 0 or self.n == 0 then return nil end
  return self.n / el
end

local function rate_str(rate, sep)
  if rate == nil then return "?" .. sep .. "it/s" end
  if rate < 1 then return fmt("%.2f%ss/it", 1 / rate, sep) end
  return fmt("%.2f%sit/s", rate, sep)
end

-- The terminal line.
function Bar:line(now)
  now = now or self.clock()
  local rate = self:_rate(now)
  local el = now - self.start
  local head = self.desc and (self.desc .. ": ") or ""
  local tail = self:_metrics(", ")
  tail = tail ~= "" and (", " .. tail) or ""
  if self.total and self.total > 0 then
    local frac = math.min(self.n / self.total, 1)
    local fill = floor(frac * self.width)
    local eta = rate and (self.total - self.n) / rate or nil
    return fmt("%s%3d%%|%s%s| %d/%d [%s<%s, %s%s]", head, floor(frac * 100), rep("#", fill),
      rep(" ", self.width - fill), self.n, self.total, hms(el), hms(eta), rate_str(rate, ""), tail)
  end
  return fmt("%s%dit [%s, %s%s]", head, self.n, hms(el), rate_str(rate, ""), tail)
end

-- The plain (log) line.
function Bar:plain(now)
  now = now or self.clock()
  local rate = self:_rate(now)
  local el = now - self.start
  local head = self.desc and (self.desc .. ": ") or ""
  local m = self:_metrics(" ")
  m = m ~= "" and (", " .. m) or ""
  if self.total and self.total > 0 then
    local eta = rate and (self.total - self.n) / rate or nil
    return fmt("%s%d/%d (%d%%) %s elapsed, eta %s, %s%s", head, self.n, self.total,
      floor(math.min(self.n / self.total, 1) * 100), hms(el), hms(eta), rate_str(rate, " "), m)
  end
  return fmt("%s%d %s elapsed, %s%s", head, self.n, hms(el), rate_str(rate, " "), m)
end

function Bar:_write(s)
  self.out:write(s)
  if self.out.flush then self.out:flush() end
end

function Bar:_draw(now)
  local s = self:line(now)
  local pad = self.printed > #s and rep(" ", self.printed - #s) or ""
  self:_write("\r" .. s .. pad)
  self.printed = #s
  self.last = now
end

function Bar:_emit(now, force)
  if self.tty then
    if force or now - self.last >= self.refresh or (self.total and self.n >= self.total) then self:_draw(now) end
  elseif force or now - self.last >= self.interval then
    self:_write(self:plain(now) .. "\n")
    self.last = now
  end
end

-- bar:update(k, metrics): the position is now k (nil: one more than before);
-- metrics are recorded and shown.
function Bar:update(k, metrics)
  if self.closed then error("progress: update after close", 2) end
  if k == nil then k = self.n + 1 end
  if type(k) ~= "number" then error(fmt("progress: position must be a number, got %s", type(k)), 2) end
  self.n = k
  self:set(metrics)
  self:_emit(self.clock(), false)
  return self
end

-- One more step.
function Bar:step(metrics) return self:update(self.n + 1, metrics) end

-- Final output: the last line and a newline on a terminal, a last plain line
-- elsewhere. Safe to call twice.
function Bar:close(metrics)
  if self.closed then return self end
  self:set(metrics)
  local now = self.clock()
  if self.tty then
    self:_draw(now)
    self:_write("\n")
  else
    self:_write(self:plain(now) .. "\n")
  end
  self.closed = true
  return self
end

Bar.__close = function(self) self:close() end

-- for i, bar in progress.range(n, opts) do ... end: counts i = 1..n, updating
-- the bar after each pass, and closes it at the end.
function M.range(n, opts)
  local bar = M.new(n, opts)
  local i = 0
  return function()
    if i > 0 then bar:update(i) end
    if i >= n then
      bar:close()
      return nil
    end
    i = i + 1
    return i, bar
  end
end

return M
