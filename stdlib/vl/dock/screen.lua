-- vl.dock.screen — virtual screening: dock a ligand library into one receptor.
--
--   local dock = require "vl.dock"
--   for name, lig, err, index in dock.library("lib.sdf") do ... end   -- streaming, errors as values
--   local box = dock.box_around(lig, 4)                                -- Vina-style center/size
--   local res = dock.screen {receptor = "rec.pdbqt", library = "lib.sdf", box = "box.txt",
--                            out = "screen_out", exhaustiveness = 8, seed = 1, top = 10}
--
-- dock.screen writes, under `out`:
--   results.csv        every ligand, ranked by best affinity (failures last)
--   top.sdf, top.pdbqt the best pose of each of the `top` best ligands
--   poses/RANK_NAME.sdf, .pdbqt   every mode of those ligands
--   screen.journal     the checkpoint: one line per finished ligand, appended
--                      and fsynced before the next ligand starts
-- Every output is written to a temporary file and renamed into place. A screen
-- killed at any point resumes (resume = true, the default) from its journal:
-- ligands already in it are not docked again; a torn last line is dropped and
-- that ligand is docked again. Results are serialised with %.17g, so a resumed
-- screen's outputs equal an uninterrupted one's.
--
-- The functions here are installed into vl.dock by stdlib/vl/dock.lua.
local vl = require "vl"

local fmt = string.format

local M = {}

local function D() return vl.dock end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function basename(p) return (p:gsub("/+$", ""):match("([^/]*)$")) end
local function stem(p) return (basename(p):gsub("%.[^.]*$", "")) end
local function ext(p) return (basename(p):match("%.([^.]*)$") or ""):lower() end

local function is_dir(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local ok, _, code = f:read(0)
  f:close()
  return ok == nil and code == 21
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function listdir(dir)
  local h = io.popen("ls -1A -- " .. q(dir) .. " 2>/dev/null")
  local names = {}
  if h then
    for line in h:lines() do names[#names + 1] = line end
    h:close()
  end
  table.sort(names)
  return names
end

local function slurp(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

-- coords of a Molecule or Chem (or an [n, 3] tensor) as a Lua table {{x, y, z}, ...}
local function coords_of(x)
  if vl.is_tensor(x) then return x:totable() end
  if type(x) == "table" then return x end
  return x:coords():totable()
end

---------------------------------------------------------------------------
-- dock.box_around(ligand, padding = 4) -> box
---------------------------------------------------------------------------
function M.box_around(lig, padding)
  padding = padding == nil and 4 or padding
  if type(padding) ~= "number" or padding < 0 then
    error(fmt("dock.box_around: padding = %s (expected a number >= 0)", tostring(padding)), 2)
  end
  local ok, c = pcall(coords_of, lig)
  if not ok or type(c) ~= "table" then
    error("dock.box_around: expected a ligand (Molecule or Chem), an [n, 3] tensor or a table of {x, y, z}", 2)
  end
  if #c == 0 then error("dock.box_around: the ligand has no atoms", 2) end
  local lo, hi = {math.huge, math.huge, math.huge}, {-math.huge, -math.huge, -math.huge}
  for _, p in ipairs(c) do
    for k = 1, 3 do
      local v = p[k]
      if type(v) ~= "number" then error("dock.box_around: atom coordinates must be numbers", 2) end
      if v < lo[k] then lo[k] = v end
      if v > hi[k] then hi[k] = v end
    end
  end
  local center, size = {}, {}
  for k = 1, 3 do
    center[k] = (lo[k] + hi[k]) / 2
    size[k] = hi[k] - lo[k] + 2 * padding
    if size[k] <= 0 then size[k] = 2 * 0.375 end -- a flat ligand with no padding: one voxel
  end
  return D().box {center = center, size = size}
end

---------------------------------------------------------------------------
-- dock.library(path) -> iterator of name, lig, err, index, chem, map
---------------------------------------------------------------------------
local KIND = {sdf = "sdf", sd = "sdf", mol = "sdf", mol2 = "mol2", pdbqt = "pdbqt"}

-- Replace "file:N:" of a block-relative message by the library's file and line.
local function fix_line(msg, fake, real, offset)
  msg = tostring(msg)
  local s, e = msg:find(fake, 1, true)
  if not s then return msg end
  local n = msg:match("^:(%d+)", e + 1)
  if n then
    return msg:sub(1, s - 1) .. real .. ":" .. (tonumber(n) + offset) .. msg:sub(e + 1 + #n + 1)
  end
  return msg:sub(1, s - 1) .. real .. msg:sub(e + 1)
end

local function clean_err(e)
  e = tostring(e)
  return (e:gsub("^[^:\n]*stdlib/vl/[^:]*:%d+: ", ""))
end

-- one file: a generator of (chem_or_nil, lig_or_nil, err_or_nil, title)
local function file_records(path)
  local kind = KIND[ext(path)]
  if not kind then
    error(fmt("dock.library: %s: unknown ligand format '.%s' (expected .sdf, .mol, .mol2 or .pdbqt)", path, ext(path)), 3)
  end
  if kind == "sdf" then
    local reader = D().sdf_reader(path)
    return function()
      local ok, chem = pcall(reader)
      if not ok then return true, nil, nil, clean_err(chem), nil end
      if chem == nil then return nil end
      local ok2, lig, map = pcall(chem.prepare, chem)
      if not ok2 then return true, chem, nil, "prepare: " .. clean_err(lig), chem:info().title end
      return true, chem, lig, nil, chem:info().title, map
    end
  end
  local f, err = io.open(path, "rb")
  if not f then error(fmt("dock.library: cannot open %s", err), 3) end
  local lineno, pending, done = 0, nil, false
  -- read one block: MOL2 from one @<TRIPOS>MOLECULE to the next; PDBQT one MODEL..ENDMDL
  -- (or the whole file without MODEL records)
  local function next_block()
    if done then return nil end
    local lines, start = {}, nil
    if pending then lines[1] = pending; start = lineno; pending = nil end
    while true do
      local line = f:read("L")
      if not line then
        done = true
        f:close()
        break
      end
      lineno = lineno + 1
      if kind == "mol2" then
        if line:match("^@<TRIPOS>MOLECULE") and #lines > 0 and start then
          pending = line
          break
        end
        if start or line:match("^@<TRIPOS>MOLECULE") then
          if not start then start = lineno end
          lines[#lines + 1] = line
        end
      else
        if not start then start = lineno end
        lines[#lines + 1] = line
        if line:match("^ENDMDL") then break end
      end
    end
    if #lines == 0 then return nil end
    local text = table.concat(lines)
    if not text:match("%S") then return nil end
    return text, start - 1
  end
  if kind == "mol2" then
    local fake = path
    return function()
      local text, off = next_block()
      if not text then return nil end
      local ok, chems = pcall(D().parse_mol2, text, fake)
      if not ok then return true, nil, nil, fix_line(clean_err(chems), fake, path, off), nil end
      local chem = chems[1]
      local ok2, lig, map = pcall(chem.prepare, chem)
      if not ok2 then return true, chem, nil, "prepare: " .. fix_line(clean_err(lig), fake, path, off), chem:info().title end
      return true, chem, lig, nil, chem:info().title, map
    end
  end
  -- pdbqt: each block through a temporary file (the reader takes paths)
  return function()
    local text, off = next_block()
    if not text then return nil end
    if not text:match("\nATOM") and not text:match("^ATOM") and not text:match("HETATM") then
      if done then return nil end -- trailing remarks
    end
    local tmp = os.tmpname()
    local tf = io.open(tmp, "wb")
    tf:write(text)
    tf:close()
    local ok, ligs = pcall(D().read_ligands, tmp)
    os.remove(tmp)
    if not ok then return true, nil, nil, fix_line(clean_err(ligs), tmp, path, off), nil end
    return true, nil, ligs[1], nil, text:match("REMARK%s+Name%s*=%s*([^\n]-)%s*\n")
  end
end

--- dock.library(path) -> iterator: for name, lig, err, index, chem, map in dock.library(path) do
-- path: a multi-molecule SDF, a MOL2, a (multi-MODEL) PDBQT, or a folder of
-- .sdf/.mol/.mol2/.pdbqt files (sorted by name). SDF/MOL2 records are prepared
-- with chem:prepare(). A bad record gives lig = nil and err = the reason (with
-- file and line), and the iteration goes on. index counts records from 1.
function M.library(path)
  if type(path) ~= "string" then error("dock.library: expected a path (file or folder), got " .. type(path), 2) end
  if not exists(path) then error(fmt("dock.library: %s: no such file or folder", path), 2) end
  local files
  if is_dir(path) then
    files = {}
    for _, n in ipairs(listdir(path)) do
      if KIND[ext(n)] then files[#files + 1] = path:gsub("/+$", "") .. "/" .. n end
    end
    if #files == 0 then error(fmt("dock.library: %s: no .sdf, .mol, .mol2 or .pdbqt files in the folder", path), 2) end
  else
    if not KIND[ext(path)] then
      error(fmt("dock.library: %s: unknown ligand format '.%s' (expected .sdf, .mol, .mol2 or .pdbqt, or a folder)",
        path, ext(path)), 2)
    end
    files = {path}
  end
  local folder = #files > 1 or files[1] ~= path
  local stems = {}
  for _, f in ipairs(files) do stems[stem(f)] = (stems[stem(f)] or 0) + 1 end
  local function file_name(f) return stems[stem(f)] > 1 and basename(f) or stem(f) end
  local fi, gen, index, infile = 0, nil, 0, 0
  return function()
    while true do
      if not gen then
        fi = fi + 1
        if fi > #files then return nil end
        local ok, g = pcall(file_records, files[fi])
        infile = 0
        if not ok then
          index = index + 1
          return file_name(files[fi]), nil, clean_err(g), index, nil, nil
        end
        gen = g
      end
      local more, chem, lig, err, title, map = gen()
      if more then
        index = index + 1
        infile = infile + 1
        local name
        if folder then
          name = infile == 1 and file_name(files[fi]) or fmt("%s#%d", file_name(files[fi]), infile)
        elseif title and title:match("%S") then
          name = title:match("^%s*(.-)%s*$")
        else
          name = fmt("%s#%d", stem(files[fi]), infile)
        end
        return name, lig, err, index, chem, map
      end
      gen = nil
    end
  end
end

-- Number of records in a library, by a quick scan (for the progress bar).
function M.library_size(path)
  local files = {}
  if is_dir(path) then
    for _, n in ipairs(listdir(path)) do
      if KIND[ext(n)] then files[#files + 1] = path:gsub("/+$", "") .. "/" .. n end
    end
  else
    files[1] = path
  end
  local total = 0
  for _, p in ipairs(files) do
    local kind = KIND[ext(p)]
    local f = io.open(p, "rb")
    if f then
      local n, models, atoms, last = 0, 0, false, nil
      for line in f:lines() do
        if kind == "sdf" then
          if line:match("^%$%$%$%$") then n = n + 1; last = false elseif line:match("%S") then last = true end
        elseif kind == "mol2" then
          if line:match("^@<TRIPOS>MOLECULE") then n = n + 1 end
        else
          if line:match("^MODEL") then models = models + 1 end
          if line:match("^ATOM") or line:match("^HETATM") then atoms = true end
        end
      end
      f:close()
      if kind == "sdf" and last then n = n + 1 end
      if kind == "pdbqt" then n = models > 0 and models or (atoms and 1 or 0) end
      total = total + math.max(n, 1)
    end
  end
  return total
end

---------------------------------------------------------------------------
-- dock.dock_local: a deterministic stand-in for dock.dock without search
---------------------------------------------------------------------------
--- dock.dock_local(rec, lig, box, opts) -> {{affinity, inter, intra, rmsd_lb = 0, rmsd_ub = 0, coords}}
-- The ligand's input conformation, its centroid moved to the box centre, optimised
-- locally (dock.local_only: BFGS on the grid maps). No random search: one pose.
function M.dock_local(rec, lig, box, opts)
  local c = lig:coords():totable()
  local n = #c
  local cen = {0, 0, 0}
  for _, p in ipairs(c) do for k = 1, 3 do cen[k] = cen[k] + p[k] / n end end
  local pos = {}
  for k = 1, 3 do pos[k] = c[1][k] - cen[k] + box.center[k] end
  local r = D().local_only(rec, lig, box, {pos = pos, max_steps = opts and opts.max_steps})
  return {{affinity = r.affinity, inter = r.inter, intra = r.intra, rmsd_lb = 0, rmsd_ub = 0, coords = r.coords}}
end

---------------------------------------------------------------------------
-- journal (checkpoint) records
---------------------------------------------------------------------------
local JOURNAL = "screen.journal"
local MAGIC = "vlua-screen-journal 1"

local function esc(s)
  return (tostring(s or ""):gsub("[\\\t\n\r]", {["\\"] = "\\\\", ["\t"] = "\\t", ["\n"] = "\\n", ["\r"] = "\\r"}))
end
local function unesc(s)
  return (s:gsub("\\(.)", {["\\"] = "\\", t = "\t", n = "\n", r = "\r"}))
end

local function num(x) return fmt("%.17g", x) end

-- A result record r = {index, name, status, heavy, ntors, seconds, error, poses = {{affinity, inter, intra,
-- rmsd_lb, rmsd_ub, coords = {{x, y, z}, ...}}, ...}}
local function encode(r)
  local parts = {"L", tostring(r.index), esc(r.name), r.status, tostring(r.heavy or 0), tostring(r.ntors or 0),
    num(r.seconds or 0), esc(r.error), tostring(#r.poses), tostring(r.poses[1] and #r.poses[1].coords or 0)}
  for _, p in ipairs(r.poses) do
    parts[#parts + 1] = table.concat({num(p.affinity), num(p.inter), num(p.intra), num(p.rmsd_lb), num(p.rmsd_ub)}, " ")
    local xs = {}
    for _, a in ipairs(p.coords) do xs[#xs + 1] = num(a[1]); xs[#xs + 1] = num(a[2]); xs[#xs + 1] = num(a[3]) end
    parts[#parts + 1] = table.concat(xs, " ")
  end
  parts[#parts + 1] = "E"
  return table.concat(parts, "\t") .. "\n"
end

local function decode(line)
  line = line:gsub("\n$", "")
  local f = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
  if f[1] ~= "L" or f[#f] ~= "E" then return nil end
  local np, na = tonumber(f[9]), tonumber(f[10])
  if not np or not na or #f ~= 11 + 2 * np then return nil end
  local r = {index = math.tointeger(tonumber(f[2])), name = unesc(f[3]), status = f[4], heavy = tonumber(f[5]),
    ntors = tonumber(f[6]), seconds = tonumber(f[7]), error = f[8] ~= "" and unesc(f[8]) or nil, poses = {}}
  if not r.index or (r.status ~= "ok" and r.status ~= "error") then return nil end
  for p = 1, np do
    local e = {}
    for x in f[9 + 2 * p]:gmatch("%S+") do e[#e + 1] = tonumber(x) end
    local xs = {}
    for x in f[10 + 2 * p]:gmatch("%S+") do xs[#xs + 1] = tonumber(x) end
    if #e ~= 5 or #xs ~= 3 * na then return nil end
    local coords = {}
    for a = 1, na do coords[a] = {xs[3 * a - 2], xs[3 * a - 1], xs[3 * a]} end
    r.poses[p] = {affinity = e[1], inter = e[2], intra = e[3], rmsd_lb = e[4], rmsd_ub = e[5], coords = coords}
  end
  r.affinity = r.poses[1] and r.poses[1].affinity
  return r
end

-- Read the journal: settings line and records by index. A torn or malformed line
-- (a crash during its write) is dropped; returns the records, the header and
-- whether the file must be rewritten without the dropped lines.
local function read_journal(path)
  local text = slurp(path)
  if not text then return nil end
  local recs, header, dirty, count, good = {}, nil, false, 0, {}
  local first = true
  for line, nl in text:gmatch("([^\n]*)(\n?)") do
    if first then
      first = false
      header = line
      if nl == "" then dirty = true end
    elseif line ~= "" or nl ~= "" then
      local r = nl == "\n" and decode(line) or nil
      if r and not recs[r.index] then
        recs[r.index] = r
        good[#good + 1] = line .. "\n"
        count = count + 1
      elseif line ~= "" then
        dirty = true
      end
    end
  end
  return recs, header, dirty, count, good
end

---------------------------------------------------------------------------
-- outputs
---------------------------------------------------------------------------
local function csv_field(s)
  s = tostring(s == nil and "" or s)
  if s:find('[,"\n\r]') then s = '"' .. s:gsub('"', '""') .. '"' end
  return s
end

-- the ranking: docked ligands by best affinity (then index), failures last by index
local function before(a, b)
  local oa, ob = a.status == "ok", b.status == "ok"
  if oa ~= ob then return oa end
  if oa and a.affinity ~= b.affinity then return a.affinity < b.affinity end
  return a.index < b.index
end

local function ranked(recs)
  local list = {}
  for _, r in pairs(recs) do list[#list + 1] = r end
  table.sort(list, before)
  return list
end

-- Poses (coordinates) are kept in memory only for the `top` best ligands so far,
-- so that a screen of a large library runs in bounded memory; the others keep
-- their scores (the journal has everything).
local function strip(r)
  r.nposes = #r.poses
  local p = r.poses[1]
  r.poses = p and {{affinity = p.affinity, inter = p.inter, intra = p.intra, rmsd_lb = p.rmsd_lb,
    rmsd_ub = p.rmsd_ub}} or {}
end

local function keep_top(topk, r, k)
  if r.status ~= "ok" or k == 0 then strip(r) return end
  local i = #topk + 1
  while i > 1 and before(r, topk[i - 1]) do i = i - 1 end
  if i > k then strip(r) return end
  table.insert(topk, i, r)
  if #topk > k then strip(table.remove(topk)) end
end

M.csv_columns = {"rank", "name", "index", "affinity", "inter", "intra", "num_torsions", "heavy_atoms", "num_poses",
  "seconds", "status", "error"}

local function write_csv(path, list)
  local lines = {table.concat(M.csv_columns, ",")}
  for rank, r in ipairs(list) do
    local p = r.poses[1]
    lines[#lines + 1] = table.concat({rank, csv_field(r.name), r.index, p and fmt("%.3f", p.affinity) or "",
      p and fmt("%.3f", p.inter) or "", p and fmt("%.3f", p.intra) or "", r.ntors or "", r.heavy or "", r.nposes or #r.poses,
      fmt("%.2f", r.seconds or 0), r.status, csv_field(r.error and r.error:gsub("\n", " ") or "")}, ",")
  end
  vl.write_file(path, table.concat(lines, "\n") .. "\n")
end

local function pose_tensor(poses, n)
  local t = {}
  for p, pose in ipairs(poses) do t[p] = pose.coords end
  if n then return vl.tensor(t[1], {dtype = "float64"}) end
  return vl.tensor(t, {dtype = "float64"})
end

-- A Chem for a PDBQT ligand (no source Chem): V2000 text from the molecule's atoms
-- and bonds (single bonds; the PDBQT has no orders), in the molecule's atom order.
local function chem_from_mol(mol, name)
  local atoms, bonds = mol:atoms(), mol:bonds()
  local out = {name or "ligand", "  vlua          3D", "",
    fmt("%3d%3d  0  0  0  0  0  0  0  0999 V2000", #atoms, #bonds)}
  for _, a in ipairs(atoms) do
    local el = a.element
    if el == "Met" or el == "Dummy" then el = "C" end
    out[#out + 1] = fmt("%10.4f%10.4f%10.4f %-3s 0  0  0  0  0  0  0  0  0  0  0  0", a.x, a.y, a.z, el)
  end
  for _, b in ipairs(bonds) do out[#out + 1] = fmt("%3d%3d  1  0", b[1], b[2]) end
  out[#out + 1] = "M  END"
  out[#out + 1] = "$$$$"
  local chems = D().parse_sdf(table.concat(out, "\n") .. "\n", name)
  local map = {}
  for i = 1, #atoms do map[i] = i end
  return chems[1], map
end

local function sub(a, b) return {a[1] - b[1], a[2] - b[2], a[3] - b[3]} end
local function dot(a, b) return a[1] * b[1] + a[2] * b[2] + a[3] * b[3] end
local function cross(a, b) return {a[2] * b[3] - a[3] * b[2], a[3] * b[1] - a[1] * b[3], a[1] * b[2] - a[2] * b[1]} end
local function unit(a)
  local l = math.sqrt(dot(a, a))
  if l < 1e-8 then return nil end
  return {a[1] / l, a[2] / l, a[3] / l}
end
local function frame(p0, p1, p2)
  local e1 = unit(sub(p1, p0))
  if not e1 then return nil end
  local v = sub(p2, p0)
  local d = dot(v, e1)
  local e2 = unit({v[1] - d * e1[1], v[2] - d * e1[2], v[3] - d * e1[3]})
  if not e2 then return nil end
  return {e1, e2, cross(e1, e2)}
end

-- A docked pose (molecule order) as coordinates of every Chem atom. Atoms of the
-- molecule take the pose's; hydrogens merged by the preparation move rigidly with
-- their heavy atom and two atoms bonded to it (bond angles are rigid in docking);
-- atoms of dropped pieces (salts) move with the centroid.
local function chem_pose(chem, map, pose)
  local old = chem:coords():totable()
  local nc = #old
  local new, placed = {}, {}
  for i, ci in ipairs(map) do
    if ci > 0 then new[ci] = pose[i]; placed[ci] = true end
  end
  local adj = {}
  for i = 1, nc do adj[i] = {} end
  for _, b in ipairs(chem:bonds()) do
    adj[b[1]][#adj[b[1]] + 1] = b[2]
    adj[b[2]][#adj[b[2]] + 1] = b[1]
  end
  local shift, np = {0, 0, 0}, 0
  for ci in pairs(placed) do
    for k = 1, 3 do shift[k] = shift[k] + new[ci][k] - old[ci][k] end
    np = np + 1
  end
  for k = 1, 3 do shift[k] = np > 0 and shift[k] / np or 0 end
  for h = 1, nc do
    if not placed[h] then
      local a
      for _, j in ipairs(adj[h]) do if placed[j] then a = j break end end
      local done = false
      if a then
        local refs = {}
        for _, j in ipairs(adj[a]) do if placed[j] and j ~= h then refs[#refs + 1] = j end end
        if #refs < 2 and refs[1] then
          for _, j in ipairs(adj[refs[1]]) do if placed[j] and j ~= a then refs[#refs + 1] = j end end
        end
        for x = 2, #refs do
          local fo = frame(old[a], old[refs[1]], old[refs[x]])
          local fn = frame(new[a], new[refs[1]], new[refs[x]])
          if fo and fn then
            local d = sub(old[h], old[a])
            local c1, c2, c3 = dot(d, fo[1]), dot(d, fo[2]), dot(d, fo[3])
            local p = {}
            for k = 1, 3 do p[k] = new[a][k] + c1 * fn[1][k] + c2 * fn[2][k] + c3 * fn[3][k] end
            new[h] = p
            done = true
            break
          end
        end
        if not done then
          new[h] = {old[h][1] + new[a][1] - old[a][1], old[h][2] + new[a][2] - old[a][2], old[h][3] + new[a][3] - old[a][3]}
          done = true
        end
      end
      if not done then new[h] = {old[h][1] + shift[1], old[h][2] + shift[2], old[h][3] + shift[3]} end
    end
  end
  return new
end

local function safe_name(s)
  local t = s:gsub("[^%w%._%-]", "_")
  if #t > 60 then t = t:sub(1, 60) end
  return t
end

-- The top ligands' poses: per-ligand files with every mode and the combined
-- best poses (top.sdf, top.pdbqt). Sources are re-read from the library.
local function write_top(opts, list, out)
  local top = {}
  for rank, r in ipairs(list) do
    if rank > opts.top or r.status ~= "ok" then break end
    top[r.index] = {rank = rank, rec = r}
  end
  local poses_dir = out .. "/poses"
  local keep = {}
  if next(top) then
    assert(os.execute("mkdir -p " .. q(poses_dir)), "dock.screen: cannot create " .. poses_dir)
    local n_left = 0
    for _ in pairs(top) do n_left = n_left + 1 end
    local sdf_parts, pdbqt_parts = {}, {}
    for name, lig, _, index, chem, map in M.library(opts.library) do
      local t = top[index]
      if t and lig then
        local r = t.rec
        if name ~= r.name then
          error(fmt("dock.screen: record %d of %s is now '%s', the journal says '%s' (the library changed?)", index,
            opts.library, name, r.name), 0)
        end
        if not chem then chem, map = chem_from_mol(lig, name) end
        local base = fmt("%s/%03d_%s", poses_dir, t.rank, safe_name(name))
        keep[fmt("%03d_%s.sdf", t.rank, safe_name(name))] = true
        keep[fmt("%03d_%s.pdbqt", t.rank, safe_name(name))] = true
        local scores, props, cposes = {}, {}, {}
        for p, pose in ipairs(r.poses) do
          scores[p] = {pose.affinity, pose.rmsd_lb, pose.rmsd_ub}
          props[p] = {name = name, rank = tostring(t.rank), index = tostring(index), mode = tostring(p),
            minimizedAffinity = fmt("%.3f", pose.affinity)}
          cposes[p] = chem_pose(chem, map, pose.coords)
        end
        D().write_pdbqt(base .. ".pdbqt", lig, {poses = pose_tensor(r.poses), scores = scores})
        D().write_sdf(base .. ".sdf", chem, {poses = vl.tensor(cposes, {dtype = "float64"}), props = props})
        -- the best pose alone, for the combined files
        local tmp = os.tmpname()
        D().write_sdf(tmp, chem, {poses = vl.tensor(cposes[1], {dtype = "float64"}), props = {props[1]}})
        sdf_parts[t.rank] = slurp(tmp)
        D().write_pdbqt(tmp, lig, {poses = pose_tensor(r.poses, 1), scores = {scores[1]}})
        pdbqt_parts[t.rank] = (slurp(tmp):gsub("^MODEL%s+%d+", fmt("MODEL %d", t.rank)))
        os.remove(tmp)
        n_left = n_left - 1
        if n_left == 0 then break end
      end
    end
    if n_left > 0 then error(fmt("dock.screen: %d top ligand(s) not found again in %s (the library changed?)", n_left,
      opts.library), 0) end
    vl.write_file(out .. "/top.sdf", table.concat(sdf_parts))
    vl.write_file(out .. "/top.pdbqt", table.concat(pdbqt_parts))
  else
    vl.write_file(out .. "/top.sdf", "")
    vl.write_file(out .. "/top.pdbqt", "")
  end
  -- poses of an earlier run that are no longer in the top
  if is_dir(poses_dir) then
    for _, n in ipairs(listdir(poses_dir)) do
      if n:match("^%d%d%d_.*%.sdf$") or n:match("^%d%d%d_.*%.pdbqt$") then
        if not keep[n] then os.remove(poses_dir .. "/" .. n) end
      end
    end
  end
end

---------------------------------------------------------------------------
-- dock.screen
---------------------------------------------------------------------------
local OPTS = {receptor = true, library = true, box = true, out = true, exhaustiveness = true, seed = true, top = true,
  threads = true, resume = true, dock_fn = true, num_modes = true, energy_range = true, progress = true,
  stop_after = true, log = true, csv_every = true}

local function check_int(o, k, min, default)
  local v = o[k]
  if v == nil then return default end
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
    error(fmt("dock.screen: %s = %s (expected an integer >= %d)", k, tostring(v), min), 3)
  end
  v = math.tointeger(v)
  if v < min then error(fmt("dock.screen: %s = %d (expected an integer >= %d)", k, v, min), 3) end
  return v
end

-- vlua turns SIGINT into the error "interrupted!": never record it as a failed ligand
local function is_interrupt(e) return tostring(e):find("interrupted!", 1, true) ~= nil end

local function box_string(b)
  return fmt("%.4f,%.4f,%.4f,%.4f,%.4f,%.4f", b.center[1], b.center[2], b.center[3], b.size[1], b.size[2], b.size[3])
end

--- dock.screen{receptor, library, box, out, exhaustiveness = 8, seed = 1, top = 10, threads,
--               resume = true, dock_fn = dock.dock, num_modes = 9, energy_range = 3, progress = true}
--   -> {ranked records}, summary
function M.screen(o)
  if type(o) ~= "table" then error("dock.screen: expected a table of options {receptor, library, box, out, ...}", 2) end
  for k in pairs(o) do
    if not OPTS[k] then error(fmt("dock.screen: unknown option '%s'", tostring(k)), 2) end
  end
  local dock = D()
  local opts = {}
  if o.receptor == nil then error("dock.screen: option 'receptor' is required (a receptor PDBQT path or dock.receptor(path))", 2) end
  if o.library == nil then error("dock.screen: option 'library' is required (an SDF/MOL2/PDBQT file or a folder)", 2) end
  if type(o.library) ~= "string" then error("dock.screen: library must be a path (file or folder), got " .. type(o.library), 2) end
  if not exists(o.library) then error(fmt("dock.screen: library %s: no such file or folder", o.library), 2) end
  if o.out == nil then error("dock.screen: option 'out' is required (the output folder)", 2) end
  if type(o.out) ~= "string" or o.out == "" then error("dock.screen: out must be a folder path", 2) end
  if o.box == nil then error("dock.screen: option 'box' is required (dock.box{center, size}, dock.box_around(lig) or a box.txt path)", 2) end
  opts.library = o.library
  opts.exhaustiveness = check_int(o, "exhaustiveness", 1, 8)
  opts.seed = check_int(o, "seed", -2 ^ 53, 1)
  opts.top = check_int(o, "top", 0, 10)
  opts.num_modes = check_int(o, "num_modes", 1, 9)
  opts.threads = check_int(o, "threads", 1, nil)
  opts.stop_after = check_int(o, "stop_after", 1, nil)
  opts.energy_range = o.energy_range or 3
  if type(opts.energy_range) ~= "number" or opts.energy_range < 0 then
    error(fmt("dock.screen: energy_range = %s (expected a number >= 0)", tostring(o.energy_range)), 2)
  end
  local resume = o.resume
  if resume == nil then resume = true end
  if type(resume) ~= "boolean" then error("dock.screen: resume must be true or false", 2) end
  local dock_fn = o.dock_fn or rawget(dock, "dock")
  if dock_fn == nil then
    error("dock.screen: dock.dock is not available in this build; pass dock_fn (e.g. dock.dock_local)", 2)
  end
  if type(dock_fn) ~= "function" then error("dock.screen: dock_fn must be a function (rec, lig, box, opts) -> poses", 2) end
  local log = o.log or io.stderr

  local rec = o.receptor
  local rec_name = "<object>"
  if type(rec) == "string" then
    rec_name = rec
    local ok, r = pcall(dock.receptor, rec)
    if not ok then error("dock.screen: receptor: " .. clean_err(r), 2) end
    rec = r
  else
    local ok, info = pcall(function() return rec:info() end)
    if not ok or type(info) ~= "table" or info.is_ligand ~= false then
      error("dock.screen: receptor must be a receptor PDBQT path or dock.receptor(path)", 2)
    end
    rec_name = info.source or rec_name
  end
  local box = o.box
  if type(box) == "string" then
    local ok, b = pcall(dock.box_from_file, box)
    if not ok then error("dock.screen: box: " .. clean_err(b), 2) end
    box = b
  elseif type(box) == "table" then
    local ok, b = pcall(dock.box, box)
    if not ok then error("dock.screen: box: " .. clean_err(b), 2) end
    box = b
  else
    error("dock.screen: box must be a table {center, size} or a path to a Vina box file", 2)
  end
  local scorer = dock.scorer(rec, box) -- built once; dock functions reuse it (dock.scorer caches per receptor and box)

  local out = o.out:gsub("/+$", "")
  if out == "" then out = "/" end
  if not os.execute("mkdir -p " .. q(out)) or not is_dir(out) then
    error(fmt("dock.screen: cannot create the output folder %s", out), 2)
  end
  local header = table.concat({MAGIC, "receptor=" .. rec_name, "library=" .. o.library, "box=" .. box_string(box),
    "exhaustiveness=" .. opts.exhaustiveness, "seed=" .. opts.seed, "num_modes=" .. opts.num_modes,
    "energy_range=" .. num(opts.energy_range)}, "\t")
  local jpath = out .. "/" .. JOURNAL
  local recs, nrecs = {}, 0
  local topk = {} -- the best `top` records so far, which keep their poses
  if resume and exists(jpath) then
    local rr, h, dirty, count, good = read_journal(jpath)
    if h ~= header then
      error(fmt("dock.screen: %s holds a screen with other settings (%s; now %s); use another out folder or resume = false",
        jpath, tostring(h):gsub("\t", " "), header:gsub("\t", " ")), 2)
    end
    recs, nrecs = rr, count
    local idx = {}
    for i in pairs(recs) do idx[#idx + 1] = i end
    table.sort(idx)
    for _, i in ipairs(idx) do keep_top(topk, recs[i], opts.top) end
    if dirty then -- drop the torn line before appending
      vl.write_file(jpath, header .. "\n" .. table.concat(good))
    end
  else
    vl.write_file(jpath, header .. "\n")
  end
  local jf = assert(io.open(jpath, "ab"))

  local total = M.library_size(o.library)
  local remaining = math.max(total - nrecs, 0)
  local bar
  if o.progress ~= false then
    local progress = require "vl.progress"
    bar = progress(remaining, {desc = nrecs > 0 and fmt("screen (resumed after %d)", nrecs) or "screen",
      out = type(o.progress) == "table" and o.progress.out or nil})
  end
  local best, nfailed = math.huge, 0
  for _, r in pairs(recs) do
    if r.status == "ok" and r.affinity < best then best = r.affinity end
    if r.status ~= "ok" then nfailed = nfailed + 1 end
  end
  local dock_opts = {exhaustiveness = opts.exhaustiveness, seed = opts.seed, num_modes = opts.num_modes,
    energy_range = opts.energy_range, threads = opts.threads}
  local csv_every = o.csv_every or 30
  local last_csv = vl.monotonic()
  local done_now = 0
  local rpath = out .. "/results.csv"
  for name, lig, err, index in M.library(o.library) do
    local old = recs[index]
    if old then
      if old.name ~= name then
        jf:close()
        error(fmt("dock.screen: record %d of %s is now '%s', the journal says '%s' (the library changed; use resume = false)",
          index, o.library, name, old.name), 2)
      end
    else
      if err and is_interrupt(err) then jf:close(); error(err, 0) end
      local t0 = vl.monotonic()
      local r = {index = index, name = name, poses = {}}
      if lig then
        local info = lig:info()
        r.heavy, r.ntors = info.heavy_atoms, info.ntorsions
        local ok, res = pcall(dock_fn, rec, lig, box, dock_opts)
        if not ok and is_interrupt(res) then -- Ctrl-C: stop here; this ligand is not in the journal
          jf:close()
          if bar then bar:close() end
          error(res, 0)
        end
        if ok then
          if type(res) == "table" and res.affinity ~= nil then res = {res} end
          if type(res) ~= "table" or #res == 0 or type(res[1]) ~= "table" or type(res[1].affinity) ~= "number" then
            ok, res = false, "dock_fn returned no poses (expected an array of {affinity, inter, intra, coords})"
          end
        end
        if ok then
          for p, pose in ipairs(res) do
            r.poses[p] = {affinity = pose.affinity, inter = pose.inter or 0, intra = pose.intra or 0,
              rmsd_lb = pose.rmsd_lb or 0, rmsd_ub = pose.rmsd_ub or 0, coords = coords_of(pose.coords)}
          end
          r.status = "ok"
        else
          r.status, r.error = "error", "dock: " .. clean_err(res)
        end
      else
        r.status, r.error = "error", err
      end
      r.seconds = vl.monotonic() - t0
      -- through the journal encoding, so a resumed screen sees identical numbers
      local line = encode(r)
      r = decode(line)
      jf:write(line)
      vl.fsync(jf) -- on disk before the next ligand starts: a power cut loses nothing either
      recs[index] = r
      keep_top(topk, r, opts.top)
      nrecs = nrecs + 1
      done_now = done_now + 1
      if r.status ~= "ok" then
        nfailed = nfailed + 1
        log:write(fmt("screen: ligand %d (%s) failed: %s\n", index, name, r.error))
      elseif r.affinity < best then
        best = r.affinity
      end
      if bar then
        if done_now > bar.total then bar.total = done_now end
        bar:update(done_now, {best = best < math.huge and fmt("%.2f", best) or "-", failed = nfailed})
      end
      if opts.stop_after and done_now >= opts.stop_after then
        os.exit(75, false) -- a simulated crash: no cleanup, no outputs
      end
      if vl.monotonic() - last_csv >= csv_every then
        write_csv(rpath, ranked(recs))
        last_csv = vl.monotonic()
      end
    end
  end
  jf:close()
  if bar then bar:close() end
  local list = ranked(recs)
  write_csv(rpath, list)
  write_top(opts, list, out)
  return list, {total = #list, failed = nfailed, docked = done_now, resumed = #list - done_now,
    best = list[1] and list[1].affinity, results = rpath, out = out}
end

return M
