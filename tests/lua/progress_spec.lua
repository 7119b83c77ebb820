-- progress_spec.lua — vl.progress: the plain-line format off a terminal
-- (checked in a child vlua whose stderr is a pipe), its interval, and the
-- redrawn terminal line (forced with tty = true) with its rate limit, driven
-- by a fake clock so that rates and times are exact.
local vl = require "vl"
local progress = require "vl.progress"

local VLUA = os.getenv("VLUA_BIN") or "build/vlua"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- A sink that records writes, and a clock the test moves.
local function sink()
  local s = { chunks = {} }
  function s:write(x) self.chunks[#self.chunks + 1] = x end
  function s:text() return table.concat(self.chunks) end
  return s
end

local function fake_clock(start)
  local c = { t = start or 100 }
  c.fn = function() return c.t end
  return c
end

local function lines(text)
  local out = {}
  for l in text:gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end

describe("progress", function()
  it("prints plain lines when stderr is not a terminal", function()
    local script = [[
      local progress = require "vl.progress"
      local bar = progress(4, {desc = "train", interval = 0})
      for i = 1, 4 do bar:update(i, {loss = 1 / i, acc = i * 0.2}) end
      bar:close()
    ]]
    local h = io.popen(q(VLUA) .. " -e " .. q(script) .. " 2>&1 >/dev/null")
    local out = h:read("a")
    h:close()
    assert.is_nil(out:find("\r", 1, true))
    local ls = lines(out)
    assert.are.equal(5, #ls)  -- one per update (interval 0) and the closing line
    for i = 1, 4 do
      local pat = ("^train: %d/4 %%(%d%%%%%%) %%d%%d:%%d%%d elapsed, eta [%%d:?]+, [%%d.]+ it/s, acc=[%%d.]+ loss=[%%d.]+$")
        :format(i, i * 25)
      assert.matches(pat, ls[i])
    end
    assert.matches("loss=0.25", ls[4])
    assert.matches("acc=0.8", ls[4])
    assert.matches("^train: 4/4 %(100%%%)", ls[5])
  end)

  it("waits `interval` seconds between plain lines", function()
    local out, clk = sink(), fake_clock()
    local bar = progress(100, { desc = "d", out = out, tty = false, interval = 5, clock = clk.fn })
    for i = 1, 100 do
      clk.t = clk.t + 0.5  -- 2 it/s
      bar:update(i)
    end
    local ls = lines(out:text())
    assert.are.equal(10, #ls)  -- at 5 s, 10 s, ... 50 s
    assert.are.equal("d: 10/100 (10%) 00:05 elapsed, eta 00:45, 2.00 it/s", ls[1])
    assert.are.equal("d: 100/100 (100%) 00:50 elapsed, eta 00:00, 2.00 it/s", ls[10])
    bar:close({ loss = 0.125 })
    ls = lines(out:text())
    assert.are.equal(11, #ls)
    assert.are.equal("d: 100/100 (100%) 00:50 elapsed, eta 00:00, 2.00 it/s, loss=0.125", ls[11])
  end)

  it("redraws a terminal line in place at most 10 times a second", function()
    local out, clk = sink(), fake_clock()
    local bar = progress(200, { desc = "train", out = out, tty = true, clock = clk.fn })
    local before = #out.chunks -- the first draw
    for i = 1, 200 do
      clk.t = clk.t + 0.01  -- 100 it/s for 2 s
      bar:update(i, { loss = 0.5 })
    end
    local draws = #out.chunks - before
    assert.is_true(draws >= 19 and draws <= 21, "draws: " .. draws)
    bar:close()
    local text = out:text()
    assert.are.equal("\n", text:sub(-1))
    local last = text:match("\r([^\r]*)\n$")
    assert.are.equal("train: 100%|####################| 200/200 [00:02<00:00, 100.00it/s, loss=0.5]", last)
    -- a mid-way line: bar half full, ETA from the rate
    local out2, clk2 = sink(), fake_clock()
    local b2 = progress(10, { out = out2, tty = true, clock = clk2.fn, width = 10 })
    clk2.t = clk2.t + 4
    b2:update(5)
    assert.are.equal(" 50%|#####     | 5/10 [00:04<00:04, 1.25it/s]", b2:line())
    clk2.t = clk2.t + 100
    assert.are.equal(" 50%|#####     | 5/10 [01:44<01:44, 20.80s/it]", b2:line())
  end)

  it("blanks the rest of a longer previous line", function()
    local out, clk = sink(), fake_clock()
    local bar = progress(nil, { out = out, tty = true, clock = clk.fn, refresh = 0 })
    clk.t = clk.t + 1
    bar:update(1, { note = "a long status message" })
    bar:set({ note = "x" })
    clk.t = clk.t + 1
    bar:update(2)
    local last = out.chunks[#out.chunks]
    assert.matches("^\r2it %[00:02, 1.00it/s, note=x%] +$", last)
    assert.are.equal(#out.chunks[#out.chunks - 1], #last)
  end)

  it("range() iterates and closes; tensors as metrics; times past an hour", function()
    local out = sink()
    local n = 0
    for i, bar in progress.range(3, { out = out, tty = false, interval = 1e9 }) do
      n = n + 1
      assert.are.equal(n, i)
      bar:set({ t = vl.tensor(2.5) })
    end
    assert.are.equal(3, n)
    assert.matches("^3/3 %(100%%%) .*t=2.5\n$", out:text())
    assert.are.equal("1:01:01", progress.format_time(3661))
    assert.are.equal("?", progress.format_time(nil))
  end)

  it("rejects bad arguments", function()
    assert.has_error(function() progress(-1) end, nil)
    local ok, err = pcall(progress, "x")
    assert.is_false(ok)
    assert.matches("total must be a non%-negative number or nil", err)
    local bar = progress(2, { out = sink(), tty = false })
    bar:close()
    ok, err = pcall(bar.update, bar, 1)
    assert.is_false(ok)
    assert.matches("update after close", err)
    ok, err = pcall(progress, 2, { out = 5 })
    assert.is_false(ok)
    assert.matches("out must be a file", err)
  end)
end)
