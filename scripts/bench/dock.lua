-- scripts/bench/dock.lua — redocking benchmark: vlua's dock.dock against
-- AutoDock Vina 1.2.3 (`vina`, run in the same script when installed) on the
-- complexes in ../shared/data/complexes (or --data DIR).
--
--   build/vlua scripts/bench/dock.lua [--only 184l,1uw6] [--exhaustiveness 8]
--        [--threads 1] [--seed 1] [--steps_scale S] [--ftol F] [--vina_bfgs] [--no-vina]
--
-- Per complex: seconds to dock the crystal ligand (ligand.pdbqt, which the
-- search starts from a random pose anyway) for vlua and for vina (same
-- exhaustiveness, --cpu = threads, --seed), the top pose's heavy-atom RMSD
-- to the crystal pose (symmetry-aware, vl.dock.rmsd against ligand.sdf) for
-- both, the top affinities, and success (< 2 Å). Times are wall clock and
-- CPU (user) seconds: on a shared machine CPU seconds are the fairer
-- comparison. vlua's time includes its grid maps, as vina's does.
-- Also prints the success rate of vina_reference.csv's top_rmsd (the issue's bar).
local vl = require "vl"
local dock = require "vl.dock"

local opts = {only = nil, exhaustiveness = 8, threads = 1, seed = 1, data = "../shared/data/complexes", vina = true}
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--only" then opts.only = arg[i + 1]; i = i + 1
  elseif a == "--exhaustiveness" then opts.exhaustiveness = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--threads" then opts.threads = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--seed" then opts.seed = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--steps_scale" then opts.steps_scale = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--data" then opts.data = arg[i + 1]; i = i + 1
  elseif a == "--no-vina" then opts.vina = false
  elseif a == "--ftol" then opts.ftol = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--vina_bfgs" then opts.vina_bfgs = true
  else error("dock bench: unknown argument " .. a .. " (expected --only, --exhaustiveness, --threads, --seed, --steps_scale, --ftol, --vina_bfgs, --data, --no-vina)") end
  i = i + 1
end

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  p:close()
  return out
end

local have_vina = opts.vina and sh("command -v vina"):match("vina") ~= nil

-- reference csv
local ref = {}
do
  local f = io.open(opts.data .. "/vina_reference.csv")
  if f then
    local head
    for line in f:lines() do
      local cols = {}
      for c in line:gmatch("[^,]+") do cols[#cols + 1] = c end
      if not head then head = cols
      else
        local r = {}
        for k, h in ipairs(head) do r[h] = tonumber(cols[k]) or cols[k] end
        ref[r.pdbid] = r
      end
    end
    f:close()
  end
end

local ids = {}
if opts.only then
  for id in opts.only:gmatch("[^,]+") do ids[#ids + 1] = id end
else
  for line in sh("ls " .. opts.data):gmatch("[^\n]+") do
    if sh("test -f " .. opts.data .. "/" .. line .. "/ligand.pdbqt && echo y"):match("y") then ids[#ids + 1] = line end
  end
end

-- Molecule (PDBQT) atoms -> crystal Chem (SDF) atoms, matched by position
local function chem_map(chem, lig)
  local cc, lc = chem:coords():totable(), lig:coords():totable()
  local atoms = lig:atoms()
  local map = {}
  for a, p in ipairs(lc) do
    if atoms[a].element ~= "H" then
      local best, bd = nil, math.huge
      for c, q in ipairs(cc) do
        local d = (p[1] - q[1]) ^ 2 + (p[2] - q[2]) ^ 2 + (p[3] - q[3]) ^ 2
        if d < bd then best, bd = c, d end
      end
      if bd > 0.01 then return nil end
      map[a] = best
    end
  end
  return map, cc
end

-- symmetry-aware heavy-atom RMSD of a pose (Molecule order) to the crystal, as
-- vina_reference.csv computes it: the minimum over the automorphisms of the graph
-- matched on element and connectivity, bond orders ignored (so that a carboxylate's
-- oxygens or a ring flip count as the same pose)
local function crystal_rmsd(chem, map, cc, xyz)
  local t = xyz:totable()
  local c = {}
  for k, p in ipairs(cc) do c[k] = {p[1], p[2], p[3]} end
  for a, k in pairs(map) do c[k] = t[a] end
  return (dock.rmsd(chem, vl.tensor(cc, {dtype = "float64"}), vl.tensor(c, {dtype = "float64"}), {ignore_orders = true}))
end

local function vina_run(d, out)
  local cmd = ("bash -c 'TIMEFORMAT=\"%%U %%R\"; time vina --receptor %s/receptor.pdbqt --ligand %s/ligand.pdbqt --config %s/box.txt " ..
    "--exhaustiveness %d --cpu %d --seed %d --out %s > /dev/null'"):format(d, d, d, opts.exhaustiveness, opts.threads, opts.seed, out)
  local o = sh(cmd)
  local user, wall = o:match("([%d%.]+) ([%d%.]+)%s*$")
  return tonumber(user), tonumber(wall)
end

print(("dock bench: exhaustiveness %d, threads %d, seed %d%s; vina %s"):format(opts.exhaustiveness, opts.threads, opts.seed,
  (opts.steps_scale and (", steps_scale " .. opts.steps_scale) or "") .. (opts.ftol and (", ftol " .. opts.ftol) or "") .. (opts.vina_bfgs and ", vina_bfgs" or ""), have_vina and "1.2.3 (same run)" or "not run"))
print(("%-5s %4s %3s | %8s %8s %7s %6s | %8s %8s %7s %6s | %6s | %8s"):format("id", "heavy", "tor", "vl_cpu", "vl_wall",
  "vl_aff", "vl_rms", "vi_cpu", "vi_wall", "vi_aff", "vi_rms", "cpu x", "ref_rms"))
local tot = {vc = 0, vw = 0, ic = 0, iw = 0, vs = 0, is = 0, rs = 0, n = 0, ni = 0, nr = 0}
local tmp = os.tmpname()
for _, id in ipairs(ids) do
  local d = opts.data .. "/" .. id
  local rec = dock.receptor(d .. "/receptor.pdbqt")
  local lig = dock.ligand(d .. "/ligand.pdbqt")
  local box = dock.box_from_file(d .. "/box.txt")
  local chem = dock.read_sdf(d .. "/ligand.sdf")[1]
  local map, cc = chem_map(chem, lig)
  local info = lig:info()
  local c0, w0 = os.clock(), vl.monotonic()
  local modes = dock.dock(rec, lig, box, {exhaustiveness = opts.exhaustiveness, seed = opts.seed, threads = opts.threads,
                                          steps_scale = opts.steps_scale, ftol = opts.ftol, vina_bfgs = opts.vina_bfgs})
  local vc, vw = os.clock() - c0, vl.monotonic() - w0
  local vr = map and crystal_rmsd(chem, map, cc, modes[1].coords) or 0 / 0
  local ic, iw, ia, ir = 0 / 0, 0 / 0, 0 / 0, 0 / 0
  if have_vina then
    ic, iw = vina_run(d, tmp)
    local ok, poses = pcall(dock.read_ligands, tmp)
    if ok and poses[1] then
      local txt = io.open(tmp):read("a")
      ia = tonumber(txt:match("REMARK VINA RESULT:%s+(%S+)"))
      local m2 = chem_map(chem, lig)
      if m2 then ir = crystal_rmsd(chem, map, cc, poses[1]:coords()) end
    end
  end
  local r = ref[id]
  print(("%-5s %4d %3d | %8.2f %8.2f %7.2f %6.2f | %8.2f %8.2f %7.2f %6.2f | %6.2f | %8.2f"):format(id, info.heavy_atoms,
    info.ntorsions, vc, vw, modes[1].affinity, vr, ic or 0 / 0, iw or 0 / 0, ia, ir, (ic or 0 / 0) / vc, r and r.top_rmsd or 0 / 0))
  io.stdout:flush()
  tot.n = tot.n + 1
  tot.vc, tot.vw = tot.vc + vc, tot.vw + vw
  if vr < 2 then tot.vs = tot.vs + 1 end
  if have_vina and ic then
    tot.ni = tot.ni + 1
    tot.ic, tot.iw = tot.ic + ic, tot.iw + (iw or 0)
    if ir < 2 then tot.is = tot.is + 1 end
  end
  if r then
    tot.nr = tot.nr + 1
    if r.top_rmsd < 2 then tot.rs = tot.rs + 1 end
  end
end
os.remove(tmp)
print(("total: vlua %.1f s cpu (%.1f s wall), success %d/%d"):format(tot.vc, tot.vw, tot.vs, tot.n))
if tot.ni > 0 then
  print(("       vina %.1f s cpu (%.1f s wall), success %d/%d; vina/vlua cpu ratio %.2fx"):format(tot.ic, tot.iw, tot.is, tot.ni,
    tot.ic / tot.vc))
end
if tot.nr > 0 then print(("       vina_reference.csv top_rmsd success %d/%d on these complexes"):format(tot.rs, tot.nr)) end
